//! Where usage is kept: `store:` in the config, or `LLM_ROUTER_STORE`.

use std::path::PathBuf;

/// Which store, from `store:` in the config or `LLM_ROUTER_STORE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    Sqlite(PathBuf),
    Redis(String),
}

impl StoreUrl {
    pub const DEFAULT: &'static str = "sqlite://llm-router.db";

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "memory" || raw == "memory://" {
            return Ok(Self::Memory);
        }
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://llm-router.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("redis://") || raw.starts_with("rediss://") {
            return url::Url::parse(raw)
                .map(|_| Self::Redis(raw.to_string()))
                .map_err(|e| format!("invalid redis URL: {e}"));
        }
        Err("must be \"memory\", \"sqlite://PATH\" or \"redis://HOST:PORT/DB\"".into())
    }

    /// A description safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".into(),
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Redis(raw) => match url::Url::parse(raw) {
                Ok(u) => format!(
                    "{}://{}:{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(6379),
                    u.path()
                ),
                Err(_) => "redis".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(StoreUrl::parse("memory"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("sqlite://data/u.db"),
            Ok(StoreUrl::Sqlite("data/u.db".into()))
        );
        assert!(matches!(
            StoreUrl::parse("redis://127.0.0.1:6379/0"),
            Ok(StoreUrl::Redis(_))
        ));
        assert!(StoreUrl::parse("postgres://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn redis_description_hides_the_password() {
        let url = StoreUrl::parse("redis://:hunter2@cache:6380/1").unwrap();
        assert_eq!(url.describe(), "redis://cache:6380/1");
    }
}
