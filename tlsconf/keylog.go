package tlsconf

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// KeyLog is an NSS key log file (the SSLKEYLOGFILE format Wireshark reads)
// for debugging: with it, anyone who reads the file can decrypt every TLS
// connection it logged. It is opened for appending and created 0600.
//
// Write never fails: crypto/tls fails a handshake whose KeyLogWriter
// returns an error, and a full disk must not stop calls. Failed writes are
// counted (Errors). Safe for concurrent use.
type KeyLog struct {
	path string
	mu   sync.Mutex
	f    *os.File
	errs atomic.Uint64
}

// OpenKeyLog opens path for appending, creating it with mode 0600; an
// existing file is set to 0600 too.
func OpenKeyLog(path string) (*KeyLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tls key log: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("tls key log: %w", err)
	}
	return &KeyLog{path: path, f: f}, nil
}

// Path is the file's name.
func (k *KeyLog) Path() string { return k.path }

// Write appends one key log line (crypto/tls writes one per call).
func (k *KeyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		k.errs.Add(1)
		return len(p), nil
	}
	if _, err := k.f.Write(p); err != nil {
		k.errs.Add(1)
	}
	return len(p), nil
}

// Errors is the number of lines that could not be written.
func (k *KeyLog) Errors() uint64 { return k.errs.Load() }

// Close closes the file; later writes are dropped (and counted).
func (k *KeyLog) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	if err != nil {
		return fmt.Errorf("tls key log: %w", err)
	}
	return nil
}

// keyLogBox holds the Store's key log writer.
type keyLogBox struct{ w io.Writer }

// SetKeyLog makes every tls.Config built from s afterwards
// (NewServerConfig, NewClientConfig) write its connections' secrets to w;
// nil turns it off. Call it before the first handshake: configs already
// built keep what they had (a server config reads it at each handshake).
func (s *Store) SetKeyLog(w io.Writer) {
	if w == nil {
		s.keyLog.Store(nil)
		return
	}
	s.keyLog.Store(&keyLogBox{w: w})
}

// keyLogWriter is the writer for tls.Config.KeyLogWriter (nil when off).
func (s *Store) keyLogWriter() io.Writer {
	if b := s.keyLog.Load(); b != nil {
		return b.w
	}
	return nil
}
