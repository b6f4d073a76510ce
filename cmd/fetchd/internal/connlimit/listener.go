package connlimit

import "net"

// Listen returns l with its connections tracked and limited by t: Accept
// returns only connections that got a slot, evicting idle ones to make
// room, and closes the rest at once.
func (t *Tracker) Listen(l net.Listener) net.Listener { return &listener{Listener: l, t: t} }

type listener struct {
	net.Listener
	t *Tracker
}

// Accept waits for a connection that gets a slot.
func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.t.admit(nc); c != nil {
			return c, nil
		}
	}
}
