package testenv

import (
	"net"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"
)

// DNSServer is a real DNS server on loopback that answers TXT questions
// from records the test sets, as a coop's DNS provider would.
type DNSServer struct {
	// Addr is host:port of the server (UDP).
	Addr string

	mu      sync.Mutex
	records map[string][]string
	srv     *mdns.Server
}

// StartDNS starts a DNS server on a free loopback port.
func StartDNS() (*DNSServer, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &DNSServer{Addr: pc.LocalAddr().String(), records: map[string][]string{}}
	d.srv = &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(d.answer)}
	go func() { _ = d.srv.ActivateAndServe() }()
	return d, nil
}

func (d *DNSServer) answer(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	name := strings.ToLower(r.Question[0].Name)
	d.mu.Lock()
	values, ok := d.records[name]
	d.mu.Unlock()
	if !ok {
		m.Rcode = mdns.RcodeNameError
	}
	for _, v := range values {
		m.Answer = append(m.Answer, &mdns.TXT{
			Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60},
			Txt: []string{v},
		})
	}
	_ = w.WriteMsg(m)
}

// SetTXT sets the TXT values of a name (with or without the final dot);
// no values removes the name.
func (d *DNSServer) SetTXT(name string, values ...string) {
	name = strings.ToLower(strings.TrimSuffix(name, ".") + ".")
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(values) == 0 {
		delete(d.records, name)
		return
	}
	d.records[name] = values
}

// Stop stops the server.
func (d *DNSServer) Stop() { _ = d.srv.Shutdown() }
