package media

import (
	"errors"
	"strconv"
	"strings"
)

func itoa(i int) string { return strconv.Itoa(i) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// replacePorts points every m= line of sdp at ip:port (the test peer's
// single socket) by replacing the address and each m= port.
func replacePorts(sdp, oldIP string, port int) string {
	sdp = strings.ReplaceAll(sdp, oldIP, "127.0.0.1")
	lines := strings.Split(sdp, "\r\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "m=") {
			continue
		}
		f := strings.Fields(l)
		if len(f) > 2 && f[1] != "0" {
			f[1] = strconv.Itoa(port)
			lines[i] = strings.Join(f, " ")
		}
	}
	return strings.Join(lines, "\r\n")
}
