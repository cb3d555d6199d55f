package sip

import (
	"context"
	"log/slog"

	"github.com/rs/zerolog"
)

// slogBridge sends sipgo's slog records to zerolog. sipgo's own messages
// are library detail: they are logged one level lower than sipgo rates them
// (its errors as warnings, its warnings as debug).
type slogBridge struct {
	log   zerolog.Logger
	attrs []slog.Attr
}

func newSlogBridge(l zerolog.Logger) *slogBridge { return &slogBridge{log: l} }

func (h *slogBridge) level(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.WarnLevel
	case l >= slog.LevelWarn:
		return zerolog.DebugLevel
	default:
		return zerolog.TraceLevel
	}
}

func (h *slogBridge) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.GetLevel() <= h.level(l)
}

func (h *slogBridge) Handle(_ context.Context, r slog.Record) error {
	ev := h.log.WithLevel(h.level(r.Level))
	if ev == nil {
		return nil
	}
	for _, a := range h.attrs {
		ev = ev.Str(a.Key, a.Value.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = ev.Str(a.Key, a.Value.String())
		return true
	})
	ev.Msg(r.Message)
	return nil
}

func (h *slogBridge) WithAttrs(as []slog.Attr) slog.Handler {
	n := &slogBridge{log: h.log, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
	return n
}

func (h *slogBridge) WithGroup(string) slog.Handler { return h }
