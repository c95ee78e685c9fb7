module srp

go 1.26.0

// Go 1.26.10 fixes net/http, crypto/tls and crypto/x509 flaws srp's code reaches (govulncheck).
toolchain go1.26.10

require (
	github.com/cloudflare/tableflip v1.2.3
	github.com/prometheus/common v0.74.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pandatix/go-abnf v0.5.5 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// OpenBSD >= 7.5 fix for descriptor duplication; see third_party/tableflip/PATCHES.md.
replace github.com/cloudflare/tableflip => ./third_party/tableflip
