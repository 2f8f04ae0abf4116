package v1alpha1

// SecretUse is one Secret key a CryptoAsset references, with the spec field that references it
// (so errors can name the field) and the purpose the helper knows it by.
type SecretUse struct {
	// Field is the spec path of the reference, for messages: spec.backend.bitcoind.passwordSecretRef.
	Field string
	// Purpose is a stable file name for the value inside the helper pod: bitcoind-password.
	Purpose string
	Ref     SecretKeyRef
}

// SecretUses lists every Secret key the spec references, in a stable order.
func (s *CryptoAssetSpec) SecretUses() []SecretUse {
	var uses []SecretUse
	add := func(field, purpose string, ref *SecretKeyRef) {
		if ref != nil {
			uses = append(uses, SecretUse{Field: field, Purpose: purpose, Ref: *ref})
		}
	}
	add("spec.database.urlSecretRef", "database-url", &s.Database.URLSecretRef)
	add("spec.api.tokenSecretRef", "api-token", &s.API.TokenSecretRef)
	if b := s.Backend.Bitcoind; b != nil {
		add("spec.backend.bitcoind.usernameSecretRef", "bitcoind-username", &b.UsernameSecretRef)
		add("spec.backend.bitcoind.passwordSecretRef", "bitcoind-password", &b.PasswordSecretRef)
		add("spec.backend.bitcoind.walletPassphraseSecretRef", "bitcoind-wallet-passphrase", b.WalletPassphraseSecretRef)
	}
	if b := s.Backend.BlockIO; b != nil {
		add("spec.backend.blockio.apiKeySecretRef", "blockio-api-key", &b.APIKeySecretRef)
		add("spec.backend.blockio.pinSecretRef", "blockio-pin", &b.PINSecretRef)
	}
	if b := s.Backend.Blockchain; b != nil {
		add("spec.backend.blockchain.guidSecretRef", "blockchain-guid", &b.GUIDSecretRef)
		add("spec.backend.blockchain.passwordSecretRef", "blockchain-password", &b.PasswordSecretRef)
		add("spec.backend.blockchain.secondPasswordSecretRef", "blockchain-second-password", b.SecondPasswordSecretRef)
		add("spec.backend.blockchain.apiKeySecretRef", "blockchain-api-key", b.APIKeySecretRef)
	}
	if n := s.Notify.HTTP; n != nil {
		add("spec.notify.http.tokenSecretRef", "notify-http-token", n.TokenSecretRef)
	}
	if n := s.Notify.Redis; n != nil {
		add("spec.notify.redis.passwordSecretRef", "notify-redis-password", n.PasswordSecretRef)
	}
	for i := range s.Events {
		e := &s.Events[i]
		prefix := "spec.events[" + e.Name + "]"
		if e.HTTP != nil {
			add(prefix+".http.signingSecretRef", "event-"+e.Name+"-signing-key", &e.HTTP.SigningSecretRef)
		}
		if e.Redis != nil {
			add(prefix+".redis.passwordSecretRef", "event-"+e.Name+"-redis-password", e.Redis.PasswordSecretRef)
		}
	}
	return uses
}

// SecretNames lists the distinct Secret names the spec references, in first-use order.
func (s *CryptoAssetSpec) SecretNames() []string {
	seen := map[string]bool{}
	var names []string
	for _, u := range s.SecretUses() {
		if !seen[u.Ref.Name] {
			seen[u.Ref.Name] = true
			names = append(names, u.Ref.Name)
		}
	}
	return names
}
