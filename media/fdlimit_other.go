//go:build !unix

package media

func fdLimit() int { return 1 << 30 }
