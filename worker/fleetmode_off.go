//go:build nofleet

package worker

import (
	"errors"

	"golang.org/x/crypto/acme"
)

// newFleetSource refuses fleet mode in a build without it (-tags
// nofleet), which leaves etcd's client out of the binary.
func newFleetSource(Options, map[string]bool, *acme.Client, func()) (*certSource, error) {
	return nil, errors.New("fleet mode (-etcd) is not in this build of srp: it was built with -tags nofleet")
}
