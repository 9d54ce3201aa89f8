module otrbnc

go 1.26.0

require (
	filippo.io/bigmod v0.1.0
	github.com/BurntSushi/toml v1.6.0
	golang.org/x/crypto v0.59.0
	golang.org/x/time v0.16.0
	gopkg.in/irc.v4 v4.0.0
)

require golang.org/x/sys v0.50.0 // indirect
