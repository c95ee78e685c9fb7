package platform

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Credential is who worker processes run as: a user and one group, with no
// supplementary groups.
type Credential struct {
	User, Group string
	UID, GID    uint32
}

func (c *Credential) String() string {
	return fmt.Sprintf("%s:%s (uid %d, gid %d)", c.User, c.Group, c.UID, c.GID)
}

// WorkerCredential resolves a -user value, "NAME" or "NAME:GROUP" (names or
// numeric ids), to the credential workers run as. The group defaults to the
// user's primary group. It refuses root, a user or group that does not exist,
// and a switch that the current process cannot make because it is not root.
// It returns nil, nil for an empty spec and for the process's own user and
// group, where there is nothing to switch.
func WorkerCredential(spec string) (*Credential, error) {
	if spec == "" {
		return nil, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && group == "") {
		return nil, fmt.Errorf("-user %q: want NAME or NAME:GROUP", spec)
	}
	u, err := lookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("-user %q: %w", spec, err)
	}
	c := &Credential{User: u.Username}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("-user %q: uid %q is not a number", spec, u.Uid)
	}
	c.UID = uint32(uid)
	gid := u.Gid
	if hasGroup {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("-user %q: %w", spec, err)
		}
		gid, c.Group = g.Gid, g.Name
	} else if g, err := user.LookupGroupId(gid); err == nil {
		c.Group = g.Name
	} else {
		c.Group = gid
	}
	n, err := strconv.ParseUint(gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("-user %q: gid %q is not a number", spec, gid)
	}
	c.GID = uint32(n)
	if c.UID == 0 || c.GID == 0 {
		return nil, fmt.Errorf("-user %q: workers must not run as root or group 0; name an unprivileged user such as _srp", spec)
	}
	return checkSwitch(spec, c)
}

func lookupUser(name string) (*user.User, error) {
	return lookup("user", name, user.Lookup, user.LookupId)
}

func lookupGroup(name string) (*user.Group, error) {
	return lookup("group", name, user.LookupGroup, user.LookupGroupId)
}

// lookup finds a user or group by name, then by numeric ID.
func lookup[T any](kind, name string, byName, byID func(string) (T, error)) (T, error) {
	v, err := byName(name)
	if err == nil {
		return v, nil
	}
	if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
		if v, ierr := byID(name); ierr == nil {
			return v, nil
		}
	}
	var unknownUser user.UnknownUserError
	var unknownGroup user.UnknownGroupError
	if errors.As(err, &unknownUser) || errors.As(err, &unknownGroup) {
		return v, fmt.Errorf("no such %s %q", kind, name)
	}
	return v, fmt.Errorf("look up %s %q: %w", kind, name, err)
}
