//! Password hashes: argon2id PHC strings (our own format) and bcrypt (read from htpasswd
//! files for migration). Checking a hash's form happens at load time, so a bad entry is
//! reported with its file and line instead of surfacing as a failed login; verification is
//! CPU-heavy and is only called from the authenticator's bounded blocking pool.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, Params, PasswordVerifier, ARGON2ID_IDENT};

/// Which algorithm a stored hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashKind {
    Argon2id,
    Bcrypt,
}

/// bcrypt cost above which a line is refused: cost 18 already takes tens of seconds per
/// verification, which would tie up the verification pool for everyone.
const MAX_BCRYPT_COST: u32 = 17;

/// Largest argon2 memory cost accepted (KiB): 1 GiB per verification is already more than
/// an appliance should spend; larger values are typos or an attempt to exhaust memory.
const MAX_ARGON2_M_COST: u32 = 1024 * 1024;

/// An argon2id hash with the default parameters (those [`super::hash_password`] uses) of a
/// password nobody knows. Unknown users are verified against it so that a login for a
/// user who does not exist costs as much as one with a wrong password. Its outcome is
/// ignored, so it does not matter that it is public.
pub(crate) const DUMMY_ARGON2ID: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$aG9sZGZhc3QtZHVtbXktc2FsdA$xeln3WNtVcwdirM9/j0L9FRsJfgW5/0jjUAJcHKOXtM";

/// Accepts argon2id PHC strings with sane parameters; the error says what is wrong
/// (without echoing the hash).
pub(crate) fn check_argon2id(phc: &str) -> Result<(), String> {
    if check_bcrypt(phc).is_ok() {
        return Err("password_hash is bcrypt; only argon2id is accepted here \
                    (list bcrypt users in an htpasswd file under `htpasswd_files`)"
            .to_owned());
    }
    let hash =
        PasswordHash::new(phc).map_err(|e| format!("password_hash is not a PHC string ({e})"))?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(format!(
            "password_hash uses `{}`; only argon2id is accepted (`holdfast user passwd` makes one)",
            hash.algorithm
        ));
    }
    let params =
        Params::try_from(&hash).map_err(|e| format!("password_hash has bad parameters ({e})"))?;
    if params.m_cost() > MAX_ARGON2_M_COST {
        return Err(format!(
            "password_hash memory cost m={} KiB is above the limit of {MAX_ARGON2_M_COST}",
            params.m_cost()
        ));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("password_hash lacks its salt or hash part".to_owned());
    }
    Ok(())
}

/// Accepts `$2a$`, `$2b$` and `$2y$` bcrypt hashes (what `htpasswd -B` writes).
pub(crate) fn check_bcrypt(hash: &str) -> Result<(), String> {
    let prefix_ok = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !prefix_ok || hash.len() != 60 || !hash.is_ascii() {
        return Err("not a bcrypt hash".to_owned());
    }
    let cost: u32 = hash
        .get(4..6)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "bcrypt cost is not a number".to_owned())?;
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is outside 4..={MAX_BCRYPT_COST}"
        ));
    }
    Ok(())
}

/// `Ok(true)` when `password` matches; `Err` only for a hash that cannot be used (which
/// load-time checks should have caught).
pub(crate) fn verify(kind: HashKind, hash: &str, password: &[u8]) -> Result<bool, String> {
    match kind {
        HashKind::Argon2id => {
            let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
            // The parameters come from the hash itself, not from this default instance.
            match Argon2::default().verify_password(password, &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        }
        HashKind::Bcrypt => bcrypt::verify(password, hash).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::{Algorithm, PasswordHasher, Version};

    /// An argon2id hash with the smallest parameters, so tests run fast.
    pub(crate) fn cheap_argon2id(password: &str) -> String {
        let params = Params::new(8, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn argon2id_roundtrip() {
        let h = cheap_argon2id("correct horse");
        check_argon2id(&h).unwrap();
        assert_eq!(verify(HashKind::Argon2id, &h, b"correct horse"), Ok(true));
        assert_eq!(verify(HashKind::Argon2id, &h, b"correct horse!"), Ok(false));
        assert_eq!(verify(HashKind::Argon2id, &h, b""), Ok(false));
    }

    #[test]
    fn argon2_checks() {
        assert!(check_argon2id("plaintext").is_err());
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"x")
        .unwrap()
        .to_string();
        let err = check_argon2id(&argon2i).unwrap_err();
        assert!(err.contains("argon2i"), "{err}");
        assert!(!err.contains("$argon2i$"), "must not echo the hash: {err}");
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$aG9sZGZhc3QtZHVtbXktc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(check_argon2id(huge).unwrap_err().contains("memory"));
    }

    #[test]
    fn dummy_uses_default_parameters() {
        check_argon2id(DUMMY_ARGON2ID).unwrap();
        let parsed = PasswordHash::new(DUMMY_ARGON2ID).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        let default = Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(
            verify(HashKind::Argon2id, DUMMY_ARGON2ID, b"guess"),
            Ok(false)
        );
    }

    #[test]
    fn bcrypt_roundtrip_and_checks() {
        let h = bcrypt::hash("hunter2", 4).unwrap();
        check_bcrypt(&h).unwrap();
        assert_eq!(verify(HashKind::Bcrypt, &h, b"hunter2"), Ok(true));
        assert_eq!(verify(HashKind::Bcrypt, &h, b"hunter3"), Ok(false));
        // htpasswd -B writes $2y$.
        let y = h.replacen("$2b$", "$2y$", 1);
        check_bcrypt(&y).unwrap();
        assert_eq!(verify(HashKind::Bcrypt, &y, b"hunter2"), Ok(true));
        assert!(check_bcrypt("$apr1$abc$def").is_err());
        assert!(check_bcrypt("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=").is_err());
        assert!(check_bcrypt(&h.replacen("$04$", "$31$", 1)).is_err());
    }
}
