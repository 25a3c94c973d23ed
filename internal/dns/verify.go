// Package dns checks that a coop owns a custom domain: it publishes a TXT
// record with the token the operator gave it.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// ChallengePrefix is the label under which a coop publishes its token:
// _cooperator-challenge.<hostname> TXT "<token>".
const ChallengePrefix = "_cooperator-challenge"

// Result of a check.
type Result int

// Results.
const (
	// Verified: the record holds the token.
	Verified Result = iota
	// Missing: there is no TXT record at the name.
	Missing
	// WrongToken: TXT records exist, none with the token.
	WrongToken
)

func (r Result) String() string {
	switch r {
	case Verified:
		return "Verified"
	case Missing:
		return "Missing"
	default:
		return "WrongToken"
	}
}

// Verifier asks one resolver.
type Verifier struct {
	// Resolver is host:port of the DNS server to ask.
	Resolver string
	// Timeout of one query; default 3 s.
	Timeout time.Duration
}

// RecordName is where the token of hostname is looked for.
func RecordName(hostname string) string {
	return ChallengePrefix + "." + strings.TrimSuffix(hostname, ".") + "."
}

// Check looks up hostname's challenge record. An error means the question
// could not be answered (the resolver is down, or failed); a missing record
// is a Result, not an error.
func (v Verifier) Check(ctx context.Context, hostname, token string) (Result, error) {
	timeout := v.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	msg := new(mdns.Msg)
	msg.SetQuestion(RecordName(hostname), mdns.TypeTXT)
	msg.RecursionDesired = true
	c := &mdns.Client{Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, msg, v.Resolver)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, msg, v.Resolver)
	}
	if err != nil {
		return Missing, fmt.Errorf("asking %s: %w", v.Resolver, err)
	}
	switch in.Rcode {
	case mdns.RcodeNameError:
		return Missing, nil
	case mdns.RcodeSuccess:
	default:
		return Missing, fmt.Errorf("asking %s: %s", v.Resolver, mdns.RcodeToString[in.Rcode])
	}
	found := false
	for _, rr := range in.Answer {
		txt, ok := rr.(*mdns.TXT)
		if !ok {
			continue
		}
		found = true
		if strings.Join(txt.Txt, "") == token {
			return Verified, nil
		}
	}
	if !found {
		return Missing, nil
	}
	return WrongToken, nil
}

// SystemResolver is the first nameserver of /etc/resolv.conf.
func SystemResolver() (string, error) {
	cfg, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", err
	}
	if len(cfg.Servers) == 0 {
		return "", errors.New("no nameserver in /etc/resolv.conf")
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}
