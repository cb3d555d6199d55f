package readiness

import (
	"path/filepath"
	"testing"
)

func TestKeyLogWarns(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	expect(t, []Result{checkKeyLog(c)}, "tls.keylog", LevelShould, VerdictOK, "tls.keylog_file not set")
	path := filepath.Join(t.TempDir(), "keys.log")
	c.TLS.KeylogFile = path
	expect(t, []Result{checkKeyLog(c)}, "tls.keylog", LevelShould, VerdictWarn, "TLS key log is on: anyone who reads "+path+" can decrypt every call's signalling")
}
