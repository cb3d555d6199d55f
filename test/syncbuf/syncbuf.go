// Package syncbuf is a bytes.Buffer safe for concurrent use: the log sink
// of a test that reads what a component writes from its own goroutines.
// It imports nothing of the project, so any package's tests (and the
// test helpers that other helpers import, such as sip/cluster/redistest)
// can use it.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is an io.Writer whose content may be read while it is written.
// The zero value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Count is how many lines written so far hold sub.
func (s *Buffer) Count(sub string) int {
	n := 0
	for _, line := range strings.Split(s.String(), "\n") {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}
