//! The CLI's connection to its node's private listener.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine;
use reqwest::Method;

use crate::config::{Config, Secret};
use crate::peer::{check, error_chain, tls_client_config};
use crate::proto::api::BASE;

pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

/// The URL of `config`'s first private listener.
pub fn private_url(config: &Config) -> Option<String> {
    listener_url(config, config.im2000.private.first()?)
}

/// The URL of the admin API: the admin listener (the node serves it
/// nowhere else).
pub fn admin_url(config: &Config) -> Option<String> {
    listener_url(config, config.im2000.admin.first()?)
}

fn listener_url(config: &Config, a: &std::net::SocketAddr) -> Option<String> {
    let ip = if a.ip().is_unspecified() { "127.0.0.1".parse().expect("ip") } else { a.ip() };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    Some(match ip {
        std::net::IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", a.port()),
        v4 => format!("{scheme}://{v4}:{}", a.port()),
    })
}

/// The password for `user`: from the config when it has it in plain, else
/// IMGATE_PASSWORD, else a prompt.
pub fn password_for(config: Option<&Config>, user: &str) -> anyhow::Result<String> {
    if let Some(c) = config
        && let Ok(addr) = user.parse()
        && let Some(u) = c.user(&addr)
        && let Some(Secret::Plain(p)) = &u.secret
    {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::var("IMGATE_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(format!("password for {user}: "))
        .context("no password: set IMGATE_PASSWORD or run from a terminal")
}

impl Api {
    pub fn new(config: Option<&Config>, server: Option<&str>, user: &str) -> anyhow::Result<Api> {
        Self::at(config, server, user, private_url)
    }

    /// A client of the admin API (the admin listener, if the node has one).
    pub fn admin(config: Option<&Config>, server: Option<&str>, user: &str) -> anyhow::Result<Api> {
        Self::at(config, server, user, admin_url)
    }

    fn at(
        config: Option<&Config>,
        server: Option<&str>,
        user: &str,
        url: fn(&Config) -> Option<String>,
    ) -> anyhow::Result<Api> {
        let base = match (server, config) {
            (Some(s), _) => s.trim_end_matches('/').to_string(),
            (None, Some(c)) => url(c).ok_or_else(|| {
                anyhow!("{} has no listener for this (im2000.private, or im2000.admin for admin commands)", c.source)
            })?,
            (None, None) => bail!("say which node: --config FILE or --server URL"),
        };
        let password = password_for(config, user)?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let tls = tls_client_config(config.and_then(|c| c.tls.as_ref()).and_then(|t| t.ca.as_deref()))
            .map_err(|e| anyhow!(e))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Api { http, base, auth: format!("Basic {token}") })
    }

    /// A request with the user's credentials. Changes (POST, PUT) say their
    /// body is JSON, as the node requires of them — except a submission,
    /// whose body is the message.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let json_body = matches!(method, Method::POST | Method::PUT) && path != "/submissions";
        let req = self.http.request(method, format!("{}{BASE}{path}", self.base)).header("authorization", &self.auth);
        if json_body { req.header(reqwest::header::CONTENT_TYPE, "application/json") } else { req }
    }

    /// Sends and returns the JSON answer, or the node's error as text.
    pub async fn json<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach {}: {}", self.base, error_chain(&e)))?;
        let resp = check(resp).await.map_err(|e| anyhow!("{} answered {e}", self.base))?;
        resp.json().await.map_err(|e| anyhow!("{} answered something unexpected: {e}", self.base))
    }
}
