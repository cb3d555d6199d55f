package config

import "errors"

// Sentinel errors; a validation error names the key and wraps ErrInvalid.
var (
	ErrEmpty   = errors.New("config is empty")
	ErrSyntax  = errors.New("config is not valid YAML for edge-sbc")
	ErrInvalid = errors.New("invalid config")
)

// KeyError names the offending key and the reason.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *KeyError) Unwrap() error { return ErrInvalid }
