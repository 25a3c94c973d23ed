package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"cooperator.dev/cooperator/internal/secret"
)

// scramIterations is PostgreSQL's default for SCRAM-SHA-256.
const scramIterations = 4096

// ScramVerifier is what PostgreSQL stores for a SCRAM-SHA-256 password.
// Sending the verifier instead of the password keeps the password out of the
// server's statement log and its pg_stat_activity.
func ScramVerifier(password string, salt []byte) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

// NewPassword is a database password: 32 random bytes, URL-safe.
func NewPassword() (string, error) {
	return secret.Token(32)
}

func newVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return ScramVerifier(password, salt)
}
