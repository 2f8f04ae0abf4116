package pincrypt

import (
	"encoding/base64"
	"encoding/hex"
	"testing"
)

// Vectors published with block.io's own client libraries (block_io-go test/helper_test.go): the
// key for PIN 123456 and one ciphertext under it. Matching them is what makes our signing
// interoperate with block.io rather than only with our test server.
func TestPinKeyAndCipherMatchBlockIOVectors(t *testing.T) {
	key, err := Key("123456")
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(key); got != "0EeMOVtm5YihUYzdCNgleqIUWkwgvNBcRmr7M0t9GOc=" {
		t.Fatalf("key for PIN 123456: %s", got)
	}
	const clear = "I'm a little tea pot short and stout"
	const cipherText = "7HTfNBYJjq09+vi8hTQhy6lCp3IHv5rztNnKCJ5RB7cSL+NjHrFVv1jl7qkxJsOg"
	if got, err := Encrypt([]byte(clear), key); err != nil || got != cipherText {
		t.Fatalf("encrypt: %s %v", got, err)
	}
	if got, err := Decrypt(cipherText, key); err != nil || string(got) != clear {
		t.Fatalf("decrypt: %q %v", got, err)
	}
	wrong, _ := Key("654321")
	if _, err := Decrypt(cipherText, wrong); err == nil {
		t.Fatal("a wrong PIN decrypted")
	}
}

func TestSignVerify(t *testing.T) {
	key, err := SigningKey([]byte(hex.EncodeToString([]byte("a passphrase"))))
	if err != nil {
		t.Fatal(err)
	}
	pub := hex.EncodeToString(key.PubKey().SerializeCompressed())
	hash := "5f78c33274e43fa9de5659265c1d917e25c03722dcb0b8d27db8d5feaa813953"
	sig, err := Sign(key, hash)
	if err != nil || !Verify(pub, hash, sig) {
		t.Fatalf("signature %s %v does not verify", sig, err)
	}
	if Verify(pub, "00"+hash[2:], sig) {
		t.Fatal("a signature verified for another hash")
	}
	if _, err := Sign(key, "abcd"); err == nil {
		t.Fatal("signed a short hash")
	}
}
