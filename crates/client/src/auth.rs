//! Logging in with etcd's Auth: credentials, the token, and the one place
//! that attaches it to every request ([`Client::channel`]).
//!
//! As etcd's clients do: the client authenticates at connect (and lazily
//! when it has no token), sends the token under `token` on every call, and
//! when a call is refused with `etcdserver: invalid auth token` (a member
//! restarted, the password changed) logs in again and retries the call
//! once; the refusal came before anything applied, so this is safe for
//! writes too.

use std::fmt;
use std::sync::Mutex;

use concord_proto::etcdserverpb::auth_client::AuthClient;
use concord_proto::etcdserverpb::AuthenticateRequest;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::Code;

use crate::{Client, Error};

/// Metadata key of the token, as etcd's clients send it.
pub const TOKEN_KEY: &str = "token";

const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
const USER_EMPTY: &str = "etcdserver: user name is empty";
const OLD_REVISION: &str = "etcdserver: revision of auth store is old";
const NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";

/// A user name and password to log in with; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// The credentials of `user`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A channel whose requests carry the client's token (when it has one).
pub(crate) type Chan = InterceptedService<Channel, Stamp>;

/// Puts the token into each request's metadata.
#[derive(Clone)]
pub(crate) struct Stamp(Option<MetadataValue<Ascii>>);

impl Interceptor for Stamp {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut().insert(TOKEN_KEY, token.clone());
        }
        Ok(req)
    }
}

/// What the client holds after logging in.
#[derive(Clone)]
enum Token {
    /// Not logged in (yet, or the token was refused).
    None,
    /// The server said auth is not enabled: calls go without a token.
    Off,
    /// The token to send.
    Some(MetadataValue<Ascii>),
}

/// The client's login: the token now (with a serial that changes with
/// it) and one login at a time.
pub(crate) struct Login {
    credentials: Option<Credentials>,
    token: Mutex<(Token, u64)>,
    gate: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.credentials.as_ref().map(Credentials::user);
        f.debug_struct("Login").field("user", &user).finish()
    }
}

impl Login {
    pub(crate) fn new(credentials: Option<Credentials>) -> Login {
        Login {
            credentials,
            token: Mutex::new((Token::None, 0)),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> (Token, u64) {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, token: Token) -> u64 {
        let mut t = self.token.lock().unwrap_or_else(|e| e.into_inner());
        *t = (token, t.1 + 1);
        t.1
    }

    /// Forgets the token of serial `used` (a later one stays).
    fn forget(&self, used: u64) {
        let mut t = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if t.1 == used {
            *t = (Token::None, used + 1);
        }
    }
}

impl Client {
    /// The channel of `url` with the token attached to every request;
    /// logs in first when the client has credentials and no token.
    pub(crate) async fn channel(&self, url: &str) -> Result<Chan, Error> {
        Ok(self.channel_and_serial(url).await?.0)
    }

    /// As [`Client::channel`], with the serial of the token it carries
    /// (for [`Client::relogin`]).
    pub(crate) async fn channel_and_serial(&self, url: &str) -> Result<(Chan, u64), Error> {
        let raw = self.inner.endpoints.channel(url).await?;
        let (token, serial) = self.token(url, &raw).await?;
        Ok((InterceptedService::new(raw, Stamp(token)), serial))
    }

    /// The token to send (none without credentials or with auth off).
    async fn token(
        &self,
        url: &str,
        raw: &Channel,
    ) -> Result<(Option<MetadataValue<Ascii>>, u64), Error> {
        let login = &self.inner.login;
        let Some(creds) = &login.credentials else {
            return Ok((None, 0));
        };
        match login.now() {
            (Token::Some(t), serial) => return Ok((Some(t), serial)),
            (Token::Off, serial) => return Ok((None, serial)),
            (Token::None, _) => {}
        }
        let _one_at_a_time = login.gate.lock().await;
        match login.now() {
            (Token::Some(t), serial) => return Ok((Some(t), serial)),
            (Token::Off, serial) => return Ok((None, serial)),
            (Token::None, _) => {}
        }
        let token = self.authenticate(url, raw.clone(), creds).await?;
        let serial = login.set(token.clone());
        match token {
            Token::Some(t) => Ok((Some(t), serial)),
            _ => Ok((None, serial)),
        }
    }

    /// One `Authenticate` on `url`. A failure other than wrong credentials
    /// is a failure to connect: the call it was for was not sent.
    async fn authenticate(
        &self,
        url: &str,
        raw: Channel,
        creds: &Credentials,
    ) -> Result<Token, Error> {
        let req = AuthenticateRequest {
            name: creds.user.clone(),
            password: creds.password.clone(),
        };
        let not_sent = |message: String| Error::Connect {
            endpoint: url.to_string(),
            message: format!("logging in: {message}"),
        };
        let answer = tokio::time::timeout(self.timeout, AuthClient::new(raw).authenticate(req))
            .await
            .map_err(|_| not_sent(format!("no answer within {:?}", self.timeout)))?;
        let status = match answer {
            Ok(resp) => {
                let token = MetadataValue::try_from(resp.into_inner().token)
                    .map_err(|_| not_sent("the token is not ASCII".into()))?;
                return Ok(Token::Some(token));
            }
            Err(status) => status,
        };
        if status.message() == NOT_ENABLED {
            return Ok(Token::Off);
        }
        if status.message() == AUTH_FAILED {
            return Err(Error::AuthFailed {
                endpoint: url.to_string(),
                user: creds.user.clone(),
                message: status.message().to_string(),
            });
        }
        match Error::from_status(url, status) {
            Error::Transport { message, .. } => Err(not_sent(message)),
            e => Err(e),
        }
    }

    /// `err` refused the token of serial `used` (or found none while auth
    /// is on): forget it so the next channel logs in. True when a retry
    /// may succeed (the client has credentials).
    pub(crate) fn relogin(&self, err: &Error, used: u64) -> bool {
        let login = &self.inner.login;
        if login.credentials.is_none() || !token_refused(err) {
            return false;
        }
        login.forget(used);
        true
    }

    /// Logs in on the first endpoint that answers (at connect): wrong
    /// credentials are an error, a cluster that does not answer is not.
    pub(crate) async fn login_at_connect(&self) -> Result<(), Error> {
        if self.inner.login.credentials.is_none() {
            return Ok(());
        }
        for url in self.inner.endpoints.urls() {
            match self.channel(&url).await {
                Ok(_) => return Ok(()),
                Err(e @ Error::AuthFailed { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// A refusal that a fresh login cures: the token is unknown or expired,
/// none was sent (auth was off when the client logged in), or the
/// permissions it was checked against changed before it applied (as
/// etcd's clients, which log in again on each of these).
fn token_refused(err: &Error) -> bool {
    match err {
        Error::Status { code, message, .. } => {
            (*code == Code::Unauthenticated && message == INVALID_TOKEN)
                || (*code == Code::InvalidArgument && message == USER_EMPTY)
                || (*code == Code::InvalidArgument && message == OLD_REVISION)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("alice", "s3cret");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
        let login = Login::new(Some(c));
        assert!(!format!("{login:?}").contains("s3cret"));
    }

    #[test]
    fn only_a_refused_token_asks_for_a_login() {
        let st = |code, msg: &str| Error::Status {
            endpoint: "e".into(),
            code,
            message: msg.into(),
        };
        assert!(token_refused(&st(Code::Unauthenticated, INVALID_TOKEN)));
        assert!(token_refused(&st(Code::InvalidArgument, USER_EMPTY)));
        assert!(token_refused(&st(Code::InvalidArgument, OLD_REVISION)));
        assert!(!token_refused(&st(
            Code::PermissionDenied,
            "etcdserver: permission denied"
        )));
    }

    #[test]
    fn a_later_token_is_not_forgotten() {
        let login = Login::new(None);
        let old = login.set(Token::Off);
        let new = login.set(Token::Off);
        login.forget(old);
        assert!(matches!(login.now(), (Token::Off, s) if s == new));
        login.forget(new);
        assert!(matches!(login.now(), (Token::None, _)));
    }
}
