// Package pincrypt is block.io's withdrawal signing scheme.
//
// block.io never sees the PIN. A withdrawal comes back from the API with the wallet's signing
// passphrase encrypted under a key derived from the PIN, and the inputs' hashes to sign; the
// client derives the key, decrypts the passphrase, derives the signing key from it, checks it
// against the public key block.io names, signs, and sends the signatures back. These functions
// follow block.io's client libraries (their published test vectors are in pincrypt_test.go).
package pincrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// Key derives the AES-256 key from the PIN: PBKDF2-SHA256 (empty salt, 1024 rounds) to 16
// bytes, hex-encoded, then PBKDF2-SHA256 again to 32 bytes.
func Key(pin string) ([]byte, error) {
	first, err := pbkdf2.Key(sha256.New, pin, nil, 1024, 16)
	if err != nil {
		return nil, err
	}
	return pbkdf2.Key(sha256.New, hex.EncodeToString(first), nil, 1024, 32)
}

// Decrypt is AES-256-ECB with PKCS#7 padding over base64 text, as block.io uses it.
func Decrypt(b64 string, key []byte) ([]byte, error) {
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("encrypted passphrase is not base64: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, errors.New("encrypted passphrase is not whole AES blocks")
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += aes.BlockSize {
		block.Decrypt(out[i:i+aes.BlockSize], data[i:i+aes.BlockSize])
	}
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		// Almost always a wrong PIN.
		return nil, errors.New("the encrypted passphrase does not decrypt with this PIN")
	}
	return out[:len(out)-pad], nil
}

// Encrypt is Decrypt's inverse; the test server uses it.
func Encrypt(plain, key []byte) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	data := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += aes.BlockSize {
		block.Encrypt(out[i:i+aes.BlockSize], data[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// SigningKey turns the decrypted passphrase (hex text) into the private key: SHA-256 of its bytes.
func SigningKey(passphraseHex []byte) (*btcec.PrivateKey, error) {
	raw, err := hex.DecodeString(string(passphraseHex))
	if err != nil {
		return nil, errors.New("the decrypted passphrase is not hex (wrong PIN?)")
	}
	sum := sha256.Sum256(raw)
	key, _ := btcec.PrivKeyFromBytes(sum[:])
	return key, nil
}

// Sign signs a 32-byte hash given in hex; the signature is DER in hex (RFC 6979 nonces).
func Sign(key *btcec.PrivateKey, hashHex string) (string, error) {
	hash, err := hex.DecodeString(hashHex)
	if err != nil || len(hash) != 32 {
		return "", fmt.Errorf("data_to_sign %q is not a 32-byte hash", hashHex)
	}
	return hex.EncodeToString(ecdsa.Sign(key, hash).Serialize()), nil
}

// Verify checks a signature made by Sign against a compressed public key in hex.
func Verify(pubHex, hashHex, sigHex string) bool {
	pub, err := hex.DecodeString(pubHex)
	if err != nil {
		return false
	}
	key, err := btcec.ParsePubKey(pub)
	if err != nil {
		return false
	}
	hash, err := hex.DecodeString(hashHex)
	if err != nil {
		return false
	}
	raw, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	sig, err := ecdsa.ParseDERSignature(raw)
	return err == nil && sig.Verify(hash, key)
}
