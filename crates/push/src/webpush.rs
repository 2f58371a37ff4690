//! Web Push's message encryption (RFC 8291, the `aes128gcm` content coding of RFC 8188) and
//! its voluntary application server identification (VAPID, RFC 8292).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use ring::{aead, hkdf};

/// The record size announced in the header: one record holds the whole payload.
const RECORD_SIZE: u32 = 4096;
/// The longest payload one record carries (its size, less the tag and the delimiter).
pub const PAYLOAD_BYTES_MAX: usize = RECORD_SIZE as usize - 16 - 1 - 86;

#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    #[error("the subscription's public key is not a P-256 point (65 bytes, uncompressed)")]
    BadPublicKey,
    #[error("the subscription's authentication secret is not 16 bytes")]
    BadAuthSecret,
    #[error("the payload is over {PAYLOAD_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the VAPID key is not a PKCS#8 P-256 key")]
    BadVapidKey,
    #[error("cryptography failed")]
    Crypto,
}

impl From<ring::error::Unspecified> for WebPushError {
    fn from(_: ring::error::Unspecified) -> Self {
        WebPushError::Crypto
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Result<(), WebPushError> {
    prk.expand(info, Len(out.len()))?.fill(out)?;
    Ok(())
}

/// Encrypts `payload` for the subscription (`ua_public`, `auth_secret`) as one `aes128gcm`
/// record: salt, record size, the server's ephemeral public key, then the ciphertext.
pub fn encrypt(
    payload: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, WebPushError> {
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err(WebPushError::BadPublicKey);
    }
    if auth_secret.len() != 16 {
        return Err(WebPushError::BadAuthSecret);
    }
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(WebPushError::TooLarge);
    }
    let rng = SystemRandom::new();
    let as_private = EphemeralPrivateKey::generate(&ECDH_P256, &rng)?;
    let as_public = as_private.compute_public_key()?;
    let as_public = as_public.as_ref().to_vec();
    let ecdh_secret =
        agree_ephemeral(as_private, &UnparsedPublicKey::new(&ECDH_P256, ua_public), |secret| {
            secret.to_vec()
        })
        .map_err(|_| WebPushError::BadPublicKey)?;

    // RFC 8291 §3.3: the input keying material from the shared secret and the auth secret.
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(&ecdh_secret);
    let mut ikm = [0u8; 32];
    expand(&prk_key, &[b"WebPush: info\0", ua_public, &as_public], &mut ikm)?;
    // RFC 8188 §2.2: the content encryption key and nonce from a random salt.
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let mut cek = [0u8; 16];
    expand(&prk, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    let mut nonce = [0u8; 12];
    expand(&prk, &[b"Content-Encoding: nonce\0"], &mut nonce)?;

    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek)?);
    let mut record = payload.to_vec();
    // The last (and only) record's delimiter.
    record.push(2);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut record,
    )?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// The server's VAPID key: one P-256 key pair, kept across restarts and shared by every
/// logic node, whose public half browsers subscribe with.
pub struct VapidKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl VapidKey {
    /// A new key; keep [`VapidKey::pkcs8`] to load it again.
    pub fn generate() -> Result<VapidKey, WebPushError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        VapidKey::from_pkcs8(pkcs8.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<VapidKey, WebPushError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| WebPushError::BadVapidKey)?;
        Ok(VapidKey { pair, pkcs8: pkcs8.to_vec(), rng })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key, 65 bytes uncompressed (a browser's `applicationServerKey`).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The `Authorization` header value for a push service at `audience` (the endpoint's
    /// origin): `vapid t=<JWT signed ES256>, k=<public key>`, valid for 12 hours.
    pub fn authorization(
        &self,
        audience: &str,
        subject: Option<&str>,
        now_s: u64,
    ) -> Result<String, WebPushError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let mut claims = serde_json::json!({ "aud": audience, "exp": now_s + 12 * 3600 });
        if let Some(subject) = subject {
            claims["sub"] = subject.into();
        }
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = self.pair.sign(&self.rng, signed.as_bytes())?;
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(format!("vapid t={token}, k={}", URL_SAFE_NO_PAD.encode(self.public_key())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey as VerifyKey};

    #[test]
    fn the_record_layout_is_rfc_8188s() {
        // A subscription key of ring's own (its private half is spent on the check below).
        let rng = SystemRandom::new();
        let ua = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let ua_public = ua.compute_public_key().unwrap().as_ref().to_vec();
        let body = encrypt(b"hello", &ua_public, &[7; 16]).unwrap();
        assert_eq!(u32::from_be_bytes(body[16..20].try_into().unwrap()), RECORD_SIZE);
        assert_eq!(body[20], 65);
        assert_eq!(body[21], 4, "an uncompressed point");
        assert_eq!(body.len(), 16 + 4 + 1 + 65 + 5 + 1 + 16);
        assert!(matches!(
            encrypt(b"x", &ua_public[..64], &[7; 16]),
            Err(WebPushError::BadPublicKey)
        ));
        assert!(matches!(encrypt(b"x", &ua_public, &[7; 15]), Err(WebPushError::BadAuthSecret)));
        let big = vec![0; PAYLOAD_BYTES_MAX + 1];
        assert!(matches!(encrypt(&big, &ua_public, &[7; 16]), Err(WebPushError::TooLarge)));
    }

    #[test]
    fn vapid_tokens_verify_with_the_public_key_and_survive_a_reload() {
        let key = VapidKey::generate().unwrap();
        let again = VapidKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let header = again.authorization("https://push.example", Some("mailto:ops@example"), 100);
        let header = header.unwrap();
        let (token, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(k).unwrap(), key.public_key());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let verify = VerifyKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key());
        verify.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        let claims = URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["aud"], "https://push.example");
        assert_eq!(claims["exp"], 100 + 12 * 3600);
    }
}
