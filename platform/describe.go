//go:build linux || openbsd

package platform

import "strings"

// describe renders unveil rules for a log line: "path:perm path:perm".
func describe(rules []Unveil) string {
	s := make([]string, len(rules))
	for i, u := range rules {
		s[i] = u.Path + ":" + u.Perm
	}
	return strings.Join(s, " ")
}
