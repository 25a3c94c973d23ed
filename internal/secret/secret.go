// Package secret makes the random values the operator hands out: database
// passwords, apps' generated secrets, domain tokens.
package secret

import (
	"crypto/rand"
	"encoding/base64"
)

// Token is n random bytes from crypto/rand, URL-safe base64 without padding,
// so that it can stand in a URI or a DNS TXT record unescaped.
func Token(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
