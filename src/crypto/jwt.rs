//! jsonwebtoken's signing and verification backed by ring, for the two algorithms holdfast
//! issues and accepts: EdDSA (Ed25519) and ES256 (ECDSA P-256 with SHA-256, fixed-size
//! signatures). Every other algorithm, HMAC included, is refused here as well as by the
//! verifier's algorithm list, so no key can be used as an HMAC secret.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, ED25519,
};
use signature::{Signer, Verifier};

pub(super) static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match algorithm {
        Algorithm::EdDSA => {
            // PKCS#8 v1 and v2 both occur (keys written by earlier versions and by other
            // tools); the public half is derived either way.
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
            Ok(Box::new(Ed25519Signer(pair)))
        }
        Algorithm::ES256 => {
            let rng = SystemRandom::new();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.inner(), &rng)
                    .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
            Ok(Box::new(Es256Signer { pair, rng }))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match algorithm {
        Algorithm::EdDSA | Algorithm::ES256 => Ok(Box::new(RingVerifier {
            algorithm: *algorithm,
            public: key.as_bytes().to_vec(),
        })),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

struct Ed25519Signer(Ed25519KeyPair);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Es256Signer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let sig = self
            .pair
            .sign(&self.rng, msg)
            .map_err(|_| signature::Error::new())?;
        Ok(sig.as_ref().to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// Ed25519: the 32 key bytes; P-256: the 65-byte uncompressed point (what
/// `DecodingKey::from_ed_der` / `from_ec_der` hold for holdfast's keys).
struct RingVerifier {
    algorithm: Algorithm,
    public: Vec<u8>,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let result = match self.algorithm {
            Algorithm::EdDSA => {
                UnparsedPublicKey::new(&ED25519, &self.public).verify(msg, signature)
            }
            _ => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
                .verify(msg, signature),
        };
        result.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(algorithm: Algorithm, pkcs8: &[u8], public: &[u8]) {
        super::super::install();
        let enc = match algorithm {
            Algorithm::EdDSA => EncodingKey::from_ed_der(pkcs8),
            _ => EncodingKey::from_ec_der(pkcs8),
        };
        let dec = match algorithm {
            Algorithm::EdDSA => DecodingKey::from_ed_der(public),
            _ => DecodingKey::from_ec_der(public),
        };
        let sig = jsonwebtoken::crypto::sign(b"message", &enc, algorithm).unwrap();
        assert!(jsonwebtoken::crypto::verify(&sig, b"message", &dec, algorithm).unwrap());
        assert!(!jsonwebtoken::crypto::verify(&sig, b"messagf", &dec, algorithm).unwrap());
    }

    #[test]
    fn eddsa_and_es256_sign_and_verify() {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pub = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        round_trip(Algorithm::EdDSA, ed.as_ref(), ed_pub.public_key().as_ref());
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec_pub =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng).unwrap();
        use ring::signature::KeyPair;
        round_trip(Algorithm::ES256, ec.as_ref(), ec_pub.public_key().as_ref());
    }

    #[test]
    fn other_algorithms_are_refused() {
        super::super::install();
        let secret = EncodingKey::from_secret(b"a public key used as an HMAC secret");
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES384,
            Algorithm::PS256,
        ] {
            assert!(
                jsonwebtoken::crypto::sign(b"m", &secret, alg).is_err(),
                "{alg:?}"
            );
            let dec = DecodingKey::from_secret(b"x");
            assert!(
                jsonwebtoken::crypto::verify("AAAA", b"m", &dec, alg).is_err(),
                "{alg:?}"
            );
        }
    }
}
