//! Users, profiles, follows and the shared failed-login counters.

use redis::Value;

use super::{IdempotencyLease, Store, StoreError, StoreResult, CLAIM_GRACE_MS};

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

/// Which unique value of a user a claim is for.
#[derive(Debug, Clone, Copy)]
enum Unique {
    Username,
    Email,
}

impl Unique {
    fn name(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

impl Store {
    fn user_claim(&self, which: Unique, value: &str) -> String {
        match which {
            Unique::Username => self.keys.username_claim(value),
            Unique::Email => self.keys.email_claim(value),
        }
    }

    /// Claims a username or email for user `id`. A claim whose owner is gone, or no longer holds
    /// the value, is taken over once it is older than the grace period.
    ///
    /// # Returns
    /// Whether `id` holds the claim now.
    async fn claim_user_value(&self, which: Unique, value: &str, id: &str) -> StoreResult<bool> {
        let claim = self.user_claim(which, value);
        let Some((owner, age)) = self.claim(&claim, id, None).await? else {
            return Ok(true);
        };
        if age < CLAIM_GRACE_MS {
            return Ok(false);
        }
        let holder = self.user_by_id(&owner).await?;
        let holds = holder.is_some_and(|u| match which {
            Unique::Username => u.username.to_lowercase() == value.to_lowercase(),
            Unique::Email => u.email == value,
        });
        if holds {
            return Ok(false);
        }
        log::info!("taking over a stale {} claim owner={owner}", which.name());
        Ok(self.claim(&claim, id, Some(&owner)).await?.is_none())
    }

    /// Claims every value in `wanted` for `id`, all at once; if any is taken, gives back the
    /// ones this call got and fails with [`StoreError::Taken`].
    async fn claim_user_values(&self, id: &str, wanted: &[(Unique, &str)]) -> StoreResult<()> {
        let results = futures_util::future::try_join_all(
            wanted
                .iter()
                .map(|(which, value)| self.claim_user_value(*which, value, id)),
        )
        .await?;
        let taken: Vec<&'static str> = wanted
            .iter()
            .zip(&results)
            .filter(|(_, got)| !**got)
            .map(|((which, _), _)| which.name())
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        for ((which, value), got) in wanted.iter().zip(&results) {
            if *got {
                self.release(&self.user_claim(*which, value), id).await?;
            }
        }
        Err(StoreError::Taken(taken))
    }

    /// Creates a user. Username (case-insensitively) and email must be unused.
    ///
    /// Steps: a new id (kept in the idempotency record, so a retry reuses it); the username and
    /// email claims, taken at once and given back if either is taken; then the user hash, the
    /// commit point. Until then nothing reads the claims as a user: lookups through a claim
    /// check that the user exists and still holds the value.
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
        let candidate = self.next_id("user").await?;
        let (id, _) = self.reserve(lease, &candidate).await?;
        self.claim_user_values(&id, &[(Unique::Username, username), (Unique::Email, email)])
            .await?;
        let user = self.keys.user(&id);
        let mut invocation = self.scripts.put_user.prepare_invoke();
        invocation
            .key(&user)
            .arg(&id)
            .arg(username)
            .arg(email)
            .arg(password_hash);
        let _: i64 = self.eval("put_user", &invocation).await?;
        self.idem_commit(lease, &id).await?;
        self.durable().await?;
        Ok(id)
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
        let Some(id) = self.claim_owner(&self.keys.email_claim(email)).await? else {
            return Ok(None);
        };
        Ok(self
            .user_by_id(&id)
            .await?
            .filter(|user| user.email == email))
    }

    /// The id of the user called `username` (case-insensitively), in one round trip. The
    /// caller checks that the user exists and still has that name.
    pub(crate) async fn user_id_by_username(&self, username: &str) -> StoreResult<Option<String>> {
        self.claim_owner(&self.keys.username_claim(username)).await
    }

    /// Applies `changes` to user `id`; new username or email must be unused by anyone else.
    ///
    /// Steps: claims on the new values; the user hash (the commit point, with the idempotency
    /// result); then the old values' claims are given back.
    pub async fn update_user(
        &self,
        lease: Option<&IdempotencyLease>,
        id: &str,
        changes: &UserChanges,
    ) -> StoreResult<()> {
        let current = self
            .user_by_id(id)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        let mut wanted = Vec::new();
        let mut released = Vec::new();
        if let Some(name) = &changes.username {
            if name.to_lowercase() != current.username.to_lowercase() {
                wanted.push((Unique::Username, name.as_str()));
                released.push(self.keys.username_claim(&current.username));
            }
        }
        if let Some(email) = &changes.email {
            if *email != current.email {
                wanted.push((Unique::Email, email.as_str()));
                released.push(self.keys.email_claim(&current.email));
            }
        }
        self.claim_user_values(id, &wanted).await?;
        let mut args: Vec<&str> = Vec::new();
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
        let user = self.keys.user(id);
        self.commit(
            "update_user",
            &self.scripts.update_user,
            lease,
            &[&user],
            &args,
        )
        .await?;
        for claim in released {
            self.release(&claim, id).await?;
        }
        self.durable().await
    }

    /// The profile of `username` as `viewer` sees it, in two round trips.
    pub async fn profile(&self, viewer: Option<&str>, username: &str) -> StoreResult<ProfileView> {
        let id = self
            .user_id_by_username(username)
            .await?
            .ok_or(StoreError::NotFound("profile"))?;
        self.profile_by_id(viewer, &id)
            .await?
            .filter(|p| p.username.to_lowercase() == username.to_lowercase())
            .ok_or(StoreError::NotFound("profile"))
    }

    /// The profile of user `id` as `viewer` sees it, in one wave of round trips.
    pub(crate) async fn profile_by_id(
        &self,
        viewer: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<ProfileView>> {
        let mut profiles = self.profiles(viewer, &[id.to_owned()]).await?;
        Ok(profiles.remove(id))
    }

    /// Profiles of several users as `viewer` sees them, in one wave: one `HMGET` per user (each
    /// in its own slot) and one `SMISMEMBER` on the viewer's following set, all at once.
    pub(crate) async fn profiles(
        &self,
        viewer: Option<&str>,
        ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, ProfileView>> {
        let mut out = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let pipes: Vec<redis::Pipeline> = ids
            .iter()
            .map(|id| {
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(self.keys.user(id))
                    .arg("username")
                    .arg("bio")
                    .arg("image");
                pipe
            })
            .collect();
        let following = async {
            match viewer {
                Some(viewer) => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SMISMEMBER")
                        .arg(self.keys.following(viewer))
                        .arg(ids);
                    let (flags,): (Vec<bool>,) = self.query("SMISMEMBER", &pipe).await?;
                    Ok(flags)
                }
                None => Ok(vec![false; ids.len()]),
            }
        };
        let (replies, following) =
            futures_util::future::try_join(self.query_many("HMGET", &pipes), following).await?;
        for ((id, reply), following) in ids.iter().zip(replies).zip(following) {
            let fields: Vec<Option<String>> =
                redis::from_redis_value(reply.into_iter().next().unwrap_or(Value::Nil))
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad profile reply: {e}")))?;
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
    /// Steps: the viewer's following set (the commit point, with the idempotency result); then
    /// the target's followers set; then the viewer's feed gains the target's latest
    /// [`FOLLOW_MERGE`] articles (or loses the target's articles). A retry repeats the later
    /// steps, which are idempotent.
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
        let target = match self.user_id_by_username(username).await? {
            Some(id) => self
                .user_by_id(&id)
                .await?
                .filter(|u| u.username.to_lowercase() == username.to_lowercase())
                .map(|u| u.id),
            None => None,
        }
        .ok_or(StoreError::NotFound("profile"))?;
        if target == viewer {
            return Err(StoreError::Invalid("username", "cannot follow yourself"));
        }
        let following = self.keys.following(viewer);
        self.commit(
            "follow",
            &self.scripts.commit_member,
            lease,
            &[&following],
            &[if on { "sadd" } else { "srem" }, &target, &target],
        )
        .await?;
        let mut pipe = redis::pipe();
        pipe.cmd(if on { "SADD" } else { "SREM" })
            .arg(self.keys.followers(&target))
            .arg(viewer)
            .ignore();
        let (ids,): (Vec<String>,) = if on {
            pipe.cmd("ZREVRANGE")
                .arg(self.keys.authored(&target))
                .arg(0)
                .arg(FOLLOW_MERGE - 1);
            self.query("SADD ZREVRANGE", &pipe).await?
        } else {
            pipe.cmd("ZRANGE")
                .arg(self.keys.authored(&target))
                .arg(0)
                .arg(-1);
            self.query("SREM ZRANGE", &pipe).await?
        };
        let feed = self.keys.feed(viewer);
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            if on {
                pipe.cmd("ZADD").arg(&feed);
                for id in chunk {
                    pipe.arg(id).arg(id);
                }
                pipe.ignore()
                    .cmd("ZREMRANGEBYRANK")
                    .arg(&feed)
                    .arg(0)
                    .arg(-(super::fanout::FEED_MAX + 1));
            } else {
                pipe.cmd("ZREM").arg(&feed).arg(chunk);
            }
            pipe.ignore();
            let () = self.query(if on { "ZADD" } else { "ZREM" }, &pipe).await?;
        }
        self.durable().await?;
        Ok(target)
    }

    /// Failed logins counted for this account and this client address in the current window.
    pub async fn login_failures(&self, email: &str, address: &str) -> StoreResult<(u64, u64, u64)> {
        let pipes: Vec<redis::Pipeline> = [
            self.keys.login_failures_account(email),
            self.keys.login_failures_address(address),
        ]
        .iter()
        .map(|key| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
            pipe
        })
        .collect();
        let replies = self.query_many("GET PTTL", &pipes).await?;
        let mut counts = [0u64; 2];
        let mut ttl = 0i64;
        for (i, reply) in replies.into_iter().enumerate() {
            let (count, pttl): (Option<u64>, i64) = redis::from_redis_value(Value::Array(reply))
                .map_err(|e| StoreError::Other(anyhow::anyhow!("bad counter reply: {e}")))?;
            counts[i] = count.unwrap_or(0);
            ttl = ttl.max(pttl);
        }
        let retry_after = (ttl.max(0) as u64).div_ceil(1000).max(1);
        Ok((counts[0], counts[1], retry_after))
    }

    /// Counts one failed login against the account and the address; the window starts at the
    /// first failure.
    pub async fn record_login_failure(
        &self,
        email: &str,
        address: &str,
        window_secs: u64,
    ) -> StoreResult<()> {
        let pipes: Vec<redis::Pipeline> = [
            self.keys.login_failures_account(email),
            self.keys.login_failures_address(address),
        ]
        .iter()
        .map(|key| {
            let mut pipe = redis::pipe();
            pipe.cmd("INCR")
                .arg(key)
                .ignore()
                .cmd("EXPIRE")
                .arg(key)
                .arg(window_secs)
                .arg("NX")
                .ignore();
            pipe
        })
        .collect();
        self.query_many("INCR EXPIRE", &pipes).await?;
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

/// How many of an author's latest articles a new follower's feed gets.
pub const FOLLOW_MERGE: i64 = 100;
