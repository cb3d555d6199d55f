//go:build !unix

package media

func fdBudget() int { return 1 << 30 }
