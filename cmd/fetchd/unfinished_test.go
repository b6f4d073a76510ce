package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// unfinishedMessages opens streams Fetch streams on one raw HTTP/2
// connection to addr, as the caller of token, and on each sends the start
// of a job message of size bytes: all of it but the last KiB, as fast as
// HTTP/2 flow control lets it, and never the rest. It returns when ctx
// ends. gRPC buffers a message's bytes as they arrive until the message is
// whole, so each unfinished message holds what was sent of it.
func unfinishedMessages(ctx context.Context, t *testing.T, addr, token string, streams, size int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Errorf("dial: %v", err)
		return
	}
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()

	var (
		mu     sync.Mutex // guards the windows; cond waits on them
		cond   = sync.NewCond(&mu)
		connW  = int64(65535)
		initW  = int64(65535)
		window = map[uint32]int64{}
		closed bool
	)
	// The reader: windows from SETTINGS and WINDOW_UPDATE, until the
	// connection goes.
	go func() {
		defer func() {
			mu.Lock()
			closed = true
			cond.Broadcast()
			mu.Unlock()
		}()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			mu.Lock()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					for id := range window {
						window[id] += int64(v) - initW
					}
					initW = int64(v)
				}
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					connW += int64(f.Increment)
				} else {
					window[f.StreamID] += int64(f.Increment)
				}
			}
			cond.Broadcast()
			mu.Unlock()
		}
	}()

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(size))
	chunk := make([]byte, 16<<10)
	var writeMu sync.Mutex // the framer writes one frame at a time
	var wg sync.WaitGroup
	for i := range streams {
		id := uint32(2*i + 1)
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/fetch.v1.FetchService/Fetch"},
			{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}, {"authorization", "Bearer " + token}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		mu.Lock()
		window[id] = initW
		mu.Unlock()
		writeMu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		if err == nil {
			err = fr.WriteData(id, false, prefix)
		}
		writeMu.Unlock()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent := 0; sent < size-1<<10; {
				n := min(len(chunk), size-1<<10-sent)
				mu.Lock()
				for !closed && (connW < int64(n) || window[id] < int64(n)) {
					cond.Wait()
				}
				if closed {
					mu.Unlock()
					return
				}
				connW -= int64(n)
				window[id] -= int64(n)
				mu.Unlock()
				writeMu.Lock()
				err := fr.WriteData(id, false, chunk[:n])
				writeMu.Unlock()
				if err != nil {
					return
				}
				sent += n
			}
		}()
	}
	wg.Wait()
	<-ctx.Done()
}
