//! `-o` mount options (from `mount -o`, an fstab line or `bridgefs mount
//! -o`) mapped onto configuration keys. Options that only mount(8) or
//! systemd read are accepted and ignored; anything else is refused by
//! name, so a typo in fstab is seen instead of silently dropped.

use crate::config::Config;

/// Options that belong to mount(8), systemd or the kernel's defaults and
/// that bridgefs has nothing to do with.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "async",
    "sync",
    "default_permissions",
];

/// Applies a comma-separated option list to `config`.
pub fn apply(config: &mut Config, list: &str) -> Result<(), String> {
    for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        apply_one(config, opt)?;
    }
    Ok(())
}

fn apply_one(config: &mut Config, opt: &str) -> Result<(), String> {
    if IGNORED.contains(&opt) || opt.starts_with("x-") || opt.starts_with("comment=") {
        return Ok(());
    }
    let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
    let bad = |what: &str| format!("mount option {opt:?}: {what}");
    match key {
        "allow_other" => config.mount.allow_other = true,
        "uid" => config.mount.uid = Some(value.parse().map_err(|_| bad("a number"))?),
        "gid" => config.mount.gid = Some(value.parse().map_err(|_| bad("a number"))?),
        "metadata_ttl" => config.cache.metadata_ttl = duration(value).map_err(|e| bad(&e))?,
        "negative_ttl" => config.cache.negative_ttl = duration(value).map_err(|e| bad(&e))?,
        "shutdown_wait" => config.cache.shutdown_wait = duration(value).map_err(|e| bad(&e))?,
        "call_deadline" => config.cache.call_deadline = duration(value).map_err(|e| bad(&e))?,
        "max_entries" => config.cache.max_entries = value.parse().map_err(|_| bad("a number"))?,
        "read_cache_bytes" => {
            config.cache.read_cache_bytes = value.parse().map_err(|_| bad("a number"))?
        }
        "ro" => {
            return Err(bad(
                "read-only mounts are not supported; use the APIs' permissions",
            ))
        }
        _ => return Err(bad("unknown (see the README's mount options)")),
    }
    Ok(())
}

fn duration(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "k").unwrap();
        let text = format!(
            "[[files]]\nbase_url = \"http://127.0.0.1:1/files\"\napi_key_file = {key:?}\napps = [\"a\"]\n"
        );
        Config::parse(&text, std::path::Path::new("t")).unwrap()
    }

    #[test]
    fn fstab_options_map_onto_config_keys() {
        let mut c = config();
        apply(
            &mut c,
            "rw,_netdev,nofail,allow_other,uid=1000,metadata_ttl=10s,x-systemd.automount",
        )
        .unwrap();
        assert!(c.mount.allow_other);
        assert_eq!(c.mount.uid, Some(1000));
        assert_eq!(c.cache.metadata_ttl, std::time::Duration::from_secs(10));
    }

    #[test]
    fn an_unknown_option_is_refused_by_name() {
        let err = apply(&mut config(), "allow_otehr").unwrap_err();
        assert!(err.contains("allow_otehr"), "{err}");
    }
}
