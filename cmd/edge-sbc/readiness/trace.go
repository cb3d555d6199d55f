package readiness

import "github.com/edge-sbc/edge-sbc/config"

var checkKeyLogOff = check{
	id:          "tls.keylog",
	requirement: "TLS secrets are not written to disk: tls.keylog_file is for debugging only",
	level:       LevelShould,
}

// checkKeyLog warns while tls.keylog_file is set: whoever reads that file
// can decrypt every call's signalling, SDES keys included.
func checkKeyLog(cfg *config.Config) Result {
	c := checkKeyLogOff
	if f := cfg.TLS.KeylogFile; f != "" {
		return c.miss("TLS key log is on: anyone who reads %s can decrypt every call's signalling (and the SRTP keys in its SDP); unset tls.keylog_file when done", f)
	}
	return c.ok("tls.keylog_file not set")
}
