package server

import (
	"sync"
	"time"
)

// runnerIdle is how long a worker goroutine waits for another job before
// it exits.
const runnerIdle = 30 * time.Second

// runner runs functions on goroutines it keeps alive between jobs, so that
// their stacks, grown deep by net/http, are reused instead of grown anew
// for every job. The zero value is not usable; see newRunner.
type runner struct {
	work     chan func()   // unbuffered: a send succeeds only if a goroutine is idle
	quit     chan struct{} // closed by close
	quitOnce sync.Once
	wg       sync.WaitGroup // the goroutines
}

func newRunner() *runner {
	return &runner{work: make(chan func()), quit: make(chan struct{})}
}

// Go runs fn on an idle goroutine, or a new one.
func (r *runner) Go(fn func()) {
	select {
	case r.work <- fn:
	default:
		r.wg.Add(1)
		go r.loop(fn)
	}
}

func (r *runner) loop(fn func()) {
	defer r.wg.Done()
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(runnerIdle)
		select {
		case fn = <-r.work:
		case <-idle.C:
			return
		case <-r.quit:
			return
		}
	}
}

// close ends the idle goroutines and waits for every goroutine to finish
// its job. Call it once no more Go calls can come.
func (r *runner) close() {
	r.quitOnce.Do(func() { close(r.quit) })
	r.wg.Wait()
}
