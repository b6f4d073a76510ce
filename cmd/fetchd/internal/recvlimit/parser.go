package recvlimit

import "encoding/binary"

// HTTP/2 framing, RFC 9113.
const (
	prefaceLen   = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	frameHeadLen = 9
	// maxFrameLen is the largest frame grpc-go reads (its framer's
	// SetMaxReadFrameSize(http2MaxFrameLen), 16 KiB: it advertises no
	// larger SETTINGS_MAX_FRAME_SIZE); it closes a connection that sends a
	// larger one.
	maxFrameLen   = 16 << 10
	frameData     = 0x0
	frameHeaders  = 0x1
	frameRST      = 0x3
	flagEndStream = 0x1
	flagPadded    = 0x8
	grpcPrefixLen = 5 // compressed flag, 4-byte big-endian length
)

// What the parser reads next.
const (
	statePreface = iota // the client preface, skipped
	stateHead           // a frame header
	statePadLen         // a padded DATA frame's pad length
	stateData           // a DATA frame's data
	stateSkip           // bytes skipped: a frame's payload, padding
	stateBroken         // the bytes make no sense: nothing is tracked
)

// message is the gRPC message in progress on one stream: its prefix read
// so far (n < grpcPrefixLen) or its length and the bytes received of it.
type message struct {
	prefix [grpcPrefixLen]byte
	n      uint8  // prefix bytes received
	length uint32 // from the prefix, once n == grpcPrefixLen
	got    uint32 // bytes of the message received
}

// parser follows the client-to-server bytes of one HTTP/2 connection and
// counts, in held, the bytes of its streams' gRPC messages received and not
// yet whole. Its cost is per frame and per message, not per byte: payloads
// are skipped by counting.
//
// A parser is used by one goroutine at a time (the connection's reader). Its
// zero value expects the client preface.
type parser struct {
	state  uint8
	skip   int // preface bytes read (statePreface), bytes left to skip (stateSkip)
	head   [frameHeadLen]byte
	headN  int
	flags  uint8
	stream uint32
	data   int  // data bytes left in the DATA frame
	pad    int  // padding after them
	inData bool // the frame read is a DATA frame

	// The DATA frame's stream's message, taken out of streams while the
	// frame is read; put back at its end only if unfinished.
	cur message

	// streams holds the streams with an unfinished message (or prefix)
	// between their DATA frames; streams between messages are not in it.
	streams map[uint32]message

	held int64 // bytes of unfinished messages: the sum over streams and cur
}

// feed reads the next bytes of the connection. It never fails: bytes that
// make no sense (a frame over maxFrameLen, DATA on stream 0, padding longer
// than its frame) stop the tracking (held drops to 0, broken reports it);
// gRPC closes such a connection itself, and the [Limiter] does too, so that
// no bytes go uncounted if gRPC did not.
func (p *parser) feed(b []byte) {
	for len(b) > 0 {
		switch p.state {
		case statePreface: // p.skip counts up to prefaceLen here
			n := min(len(b), prefaceLen-p.skip)
			p.skip += n
			b = b[n:]
			if p.skip == prefaceLen {
				p.skip = 0
				p.state = stateHead
			}
		case stateSkip:
			n := min(len(b), p.skip)
			p.skip -= n
			b = b[n:]
			if p.skip == 0 {
				p.endFrame()
			}
		case stateHead:
			n := copy(p.head[p.headN:], b)
			p.headN += n
			b = b[n:]
			if p.headN == frameHeadLen {
				p.headN = 0
				p.beginFrame()
			}
		case statePadLen:
			p.pad = int(b[0])
			b = b[1:]
			if p.pad > p.data-1 {
				p.breakDown()
				return
			}
			p.data -= 1 + p.pad
			p.state = stateData
			p.afterData()
		case stateData:
			n := min(len(b), p.data)
			p.consume(b[:n])
			p.data -= n
			b = b[n:]
			p.afterData()
		case stateBroken:
			return
		}
	}
}

// beginFrame acts on the frame header in p.head.
func (p *parser) beginFrame() {
	length := int(p.head[0])<<16 | int(p.head[1])<<8 | int(p.head[2])
	typ, flags := p.head[3], p.head[4]
	stream := binary.BigEndian.Uint32(p.head[5:]) & (1<<31 - 1)
	if length > maxFrameLen {
		p.breakDown()
		return
	}
	p.flags, p.stream = flags, stream
	switch typ {
	case frameData:
		if stream == 0 {
			p.breakDown()
			return
		}
		p.cur = p.streams[stream] // zero if between messages
		delete(p.streams, stream)
		p.data, p.pad, p.inData = length, 0, true
		if flags&flagPadded != 0 {
			if length < 1 {
				p.breakDown()
				return
			}
			p.state = statePadLen
			return
		}
		p.state = stateData
		p.afterData()
		return
	case frameHeaders:
		if flags&flagEndStream != 0 {
			p.forget(stream)
		}
	case frameRST:
		p.forget(stream)
	}
	p.skip = length
	p.state = stateSkip
	if length == 0 {
		p.endFrame()
	}
}

// afterData moves on once a DATA frame's data is read: to its padding,
// else to the end of the frame.
func (p *parser) afterData() {
	if p.data > 0 {
		return
	}
	if p.pad > 0 {
		p.skip, p.pad = p.pad, 0
		p.state = stateSkip
		return
	}
	p.endFrame()
}

// endFrame ends the frame read (a DATA frame's message is put back) and
// expects the next frame header.
func (p *parser) endFrame() {
	if p.inData {
		p.putBack()
	}
	p.state = stateHead
	p.flags, p.stream, p.inData = 0, 0, false
}

// putBack ends the DATA frame of p.stream: its message is forgotten on
// END_STREAM, kept in streams if unfinished.
func (p *parser) putBack() {
	m := p.cur
	p.cur = message{}
	if p.flags&flagEndStream != 0 {
		p.held -= int64(m.got)
		return
	}
	if m.n == 0 {
		return
	}
	if p.streams == nil {
		p.streams = make(map[uint32]message)
	}
	p.streams[p.stream] = m
}

// consume reads data bytes of p.cur's stream: the prefix a byte at a time,
// the message by counting.
func (p *parser) consume(b []byte) {
	m := &p.cur
	for len(b) > 0 {
		if m.n < grpcPrefixLen {
			c := copy(m.prefix[m.n:], b)
			m.n += uint8(c)
			b = b[c:]
			if m.n < grpcPrefixLen {
				return
			}
			m.length = binary.BigEndian.Uint32(m.prefix[1:])
			m.got = 0
		}
		n := uint32(min(uint64(len(b)), uint64(m.length-m.got)))
		m.got += n
		p.held += int64(n)
		b = b[n:]
		if m.got == m.length { // whole: gRPC decodes it; it costs 0 here
			p.held -= int64(m.length)
			*m = message{}
		}
	}
}

// forget drops a stream's unfinished message: the stream ended.
func (p *parser) forget(stream uint32) {
	if m, ok := p.streams[stream]; ok {
		p.held -= int64(m.got)
		delete(p.streams, stream)
	}
}

// broken reports whether the tracking stopped.
func (p *parser) broken() bool { return p.state == stateBroken }

// unfinished returns the number of streams with an unfinished message.
func (p *parser) unfinished() int { return len(p.streams) }

// breakDown stops the tracking: held drops to 0.
func (p *parser) breakDown() {
	p.state = stateBroken
	p.held = 0
	p.cur = message{}
	p.streams = nil
}
