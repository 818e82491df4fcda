//! Users, profiles, follows and the shared failed-login counters.

use redis::Value;

use super::{boolean, IdempotencyLease, Store, StoreError, StoreResult};

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub bio: String,
    pub image: String,
}

/// The fields of a user hash, in the order `user_by_id` asks for them.
const USER_FIELDS: [&str; 6] = ["id", "username", "email", "password", "bio", "image"];

impl UserRecord {
    /// Builds a record from the `HMGET` of [`USER_FIELDS`]; no `id` means no such user.
    fn from_fields(fields: Vec<Option<String>>) -> Option<Self> {
        let mut fields = fields.into_iter().map(Option::unwrap_or_default);
        let mut next = || fields.next().unwrap_or_default();
        let id = next();
        if id.is_empty() {
            return None;
        }
        Some(Self {
            id,
            username: next(),
            email: next(),
            password_hash: next(),
            bio: next(),
            image: next(),
        })
    }
}

/// A user as another user sees them.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub username: String,
    pub bio: String,
    pub image: String,
    pub following: bool,
}

/// Fields to change on the current user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub bio: Option<String>,
    pub image: Option<String>,
}

impl Store {
    /// Creates a user. Username (case-insensitively) and email must be unused.
    ///
    /// # Returns
    /// The new user's id.
    pub async fn create_user(
        &self,
        lease: Option<&IdempotencyLease>,
        username: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<String> {
        self.write(
            "register",
            &self.scripts.register,
            lease,
            &[username, email, password_hash],
        )
        .await
    }

    /// One user by id, in one round trip.
    pub async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.keys.user(id))
            .arg(&USER_FIELDS[..]);
        let (fields,): (Vec<Option<String>>,) = self.query("HMGET", &pipe).await?;
        Ok(UserRecord::from_fields(fields))
    }

    /// One user by email (already lowercased), in two round trips.
    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(self.keys.users_by_email()).arg(email);
        let (id,): (Option<String>,) = self.query("HGET", &pipe).await?;
        match id {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    /// Applies `changes` to user `id`; new username or email must be unused by anyone else.
    pub async fn update_user(
        &self,
        lease: Option<&IdempotencyLease>,
        id: &str,
        changes: &UserChanges,
    ) -> StoreResult<()> {
        let mut args: Vec<&str> = vec![id];
        let pairs = [
            ("username", &changes.username),
            ("email", &changes.email),
            ("password", &changes.password_hash),
            ("bio", &changes.bio),
            ("image", &changes.image),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                args.push(name);
                args.push(value);
            }
        }
        self.write("update_user", &self.scripts.update_user, lease, &args)
            .await
            .map(|_| ())
    }

    /// The profile of `username` as `viewer` sees it, in two round trips.
    pub async fn profile(&self, viewer: Option<&str>, username: &str) -> StoreResult<ProfileView> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(self.keys.users_by_username())
            .arg(username.to_ascii_lowercase());
        let (id,): (Option<String>,) = self.query("HGET", &pipe).await?;
        let id = id.ok_or(StoreError::NotFound("profile"))?;
        self.profile_by_id(viewer, &id)
            .await?
            .ok_or(StoreError::NotFound("profile"))
    }

    /// The profile of user `id` as `viewer` sees it, in one round trip.
    pub(crate) async fn profile_by_id(
        &self,
        viewer: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<ProfileView>> {
        let mut profiles = self.profiles(viewer, &[id.to_owned()]).await?;
        Ok(profiles.remove(id))
    }

    /// Profiles of several users as `viewer` sees them, in one pipelined round trip.
    pub(crate) async fn profiles(
        &self,
        viewer: Option<&str>,
        ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, ProfileView>> {
        let mut out = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.keys.user(id))
                .arg("username")
                .arg("bio")
                .arg("image");
            if let Some(viewer) = viewer {
                pipe.cmd("SISMEMBER")
                    .arg(self.keys.following(viewer))
                    .arg(id);
            }
        }
        let replies: Vec<Value> = self
            .query(
                if viewer.is_some() {
                    "HMGET SISMEMBER"
                } else {
                    "HMGET"
                },
                &pipe,
            )
            .await?;
        let mut replies = replies.into_iter();
        for id in ids {
            let fields: Vec<Option<String>> =
                redis::from_redis_value(replies.next().unwrap_or(Value::Nil))
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad profile reply: {e}")))?;
            let following = match viewer {
                Some(_) => boolean(replies.next().unwrap_or(Value::Nil))?,
                None => false,
            };
            let mut fields = fields.into_iter();
            let Some(username) = fields.next().flatten() else {
                continue;
            };
            out.insert(
                id.clone(),
                ProfileView {
                    username,
                    bio: fields.next().flatten().unwrap_or_default(),
                    image: fields.next().flatten().unwrap_or_default(),
                    following,
                },
            );
        }
        Ok(out)
    }

    /// Makes `viewer` follow (or stop following) `username`.
    ///
    /// # Returns
    /// The id of the followed user.
    pub async fn follow(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        username: &str,
        on: bool,
    ) -> StoreResult<String> {
        self.write(
            "follow",
            &self.scripts.follow,
            lease,
            &[viewer, username, if on { "1" } else { "0" }],
        )
        .await
    }

    /// Failed logins counted for this account and this client address in the current window.
    pub async fn login_failures(&self, email: &str, address: &str) -> StoreResult<(u64, u64, u64)> {
        let (account, addr) = (
            self.keys.login_failures_account(email),
            self.keys.login_failures_address(address),
        );
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&account)
            .cmd("GET")
            .arg(&addr)
            .cmd("PTTL")
            .arg(&account)
            .cmd("PTTL")
            .arg(&addr);
        let (a, b, ttl_a, ttl_b): (Option<u64>, Option<u64>, i64, i64) =
            self.query("GET PTTL", &pipe).await?;
        let retry_after = (ttl_a.max(ttl_b).max(0) as u64).div_ceil(1000).max(1);
        Ok((a.unwrap_or(0), b.unwrap_or(0), retry_after))
    }

    /// Counts one failed login against the account and the address; the window starts at the
    /// first failure.
    pub async fn record_login_failure(
        &self,
        email: &str,
        address: &str,
        window_secs: u64,
    ) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        for key in [
            self.keys.login_failures_account(email),
            self.keys.login_failures_address(address),
        ] {
            pipe.cmd("INCR")
                .arg(&key)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs)
                .arg("NX")
                .ignore();
        }
        let () = self.query("INCR EXPIRE", &pipe).await?;
        Ok(())
    }

    /// Clears the account's failure counter after a successful login.
    pub async fn clear_login_failures(&self, email: &str) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.keys.login_failures_account(email))
            .ignore();
        let () = self.query("DEL", &pipe).await?;
        Ok(())
    }
}
