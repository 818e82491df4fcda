//! Users, profiles, follows and the shared failed-login counters.

use futures_util::future::try_join_all;
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
    /// Moves on with every password change; tokens signed with an older one are refused where
    /// the record is read.
    pub token_generation: u64,
}

/// The fields of a user hash, in the order `user_by_id` asks for them.
const USER_FIELDS: [&str; 7] = [
    "id",
    "username",
    "email",
    "password",
    "bio",
    "image",
    "token_gen",
];

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
            token_generation: next().parse().unwrap_or(0),
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
    /// The new token generation, with a new password.
    pub token_generation: Option<String>,
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
        self.step_done("user_claims")?;
        let user = self.keys.user(&id);
        let mut invocation = self.scripts.put_user.prepare_invoke();
        invocation
            .key(&user)
            .arg(&id)
            .arg(username)
            .arg(email)
            .arg(password_hash);
        let _: i64 = self.eval("put_user", &invocation).await?;
        self.step_done("put_user")?;
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
        self.step_done("new_user_claims")?;
        let mut args: Vec<&str> = Vec::new();
        let pairs = [
            ("username", &changes.username),
            ("email", &changes.email),
            ("password", &changes.password_hash),
            ("bio", &changes.bio),
            ("image", &changes.image),
            ("token_gen", &changes.token_generation),
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
        self.step_done("update_user")?;
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
        let mut pipes: Vec<redis::Pipeline> = ids
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
        if let Some(viewer) = viewer {
            let mut pipe = redis::pipe();
            pipe.cmd("SMISMEMBER")
                .arg(self.keys.following(viewer))
                .arg(ids);
            pipes.push(pipe);
        }
        let mut replies = self.query_many("HMGET SMISMEMBER", &pipes).await?;
        let following: Vec<bool> = match viewer {
            Some(_) => {
                let reply = replies.pop().and_then(|r| r.into_iter().next());
                redis::from_redis_value(reply.unwrap_or(Value::Nil))
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad follows reply: {e}")))?
            }
            None => vec![false; ids.len()],
        };
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
        self.step_done("follow_commit")?;
        let mut pipe = redis::pipe();
        pipe.cmd(if on { "SADD" } else { "SREM" })
            .arg(self.keys.followers(&target))
            .arg(viewer)
            .ignore();
        let feed = self.keys.feed(viewer);
        if on {
            // The target's latest articles join the feed, which stays trimmed.
            pipe.cmd("ZREVRANGE")
                .arg(self.keys.authored(&target))
                .arg(0)
                .arg(FOLLOW_MERGE - 1);
            let (ids,): (Vec<String>,) = self.query("SADD ZREVRANGE", &pipe).await?;
            self.step_done("followers")?;
            if !ids.is_empty() {
                let mut pipe = redis::pipe();
                pipe.cmd("ZADD").arg(&feed);
                for id in &ids {
                    pipe.arg(id).arg(id);
                }
                pipe.ignore()
                    .cmd("ZREMRANGEBYRANK")
                    .arg(&feed)
                    .arg(0)
                    .arg(-(super::fanout::FEED_MAX + 1))
                    .ignore();
                let () = self.query("ZADD ZREMRANGEBYRANK", &pipe).await?;
            }
        } else {
            // The feed (at most FEED_MAX ids) loses those the target wrote: bounded by the
            // feed, not by how much the target ever wrote.
            let () = self.query("SREM", &pipe).await?;
            self.step_done("followers")?;
            let mut pipe = redis::pipe();
            pipe.cmd("ZRANGE").arg(&feed).arg(0).arg(-1);
            let (ids,): (Vec<String>,) = self.query("ZRANGE", &pipe).await?;
            if !ids.is_empty() {
                let mut pipe = redis::pipe();
                pipe.cmd("ZMSCORE")
                    .arg(self.keys.authored(&target))
                    .arg(&ids);
                let (scores,): (Vec<Option<f64>>,) = self.query("ZMSCORE", &pipe).await?;
                let theirs: Vec<&String> = ids
                    .iter()
                    .zip(scores)
                    .filter_map(|(id, score)| score.map(|_| id))
                    .collect();
                if !theirs.is_empty() {
                    let mut pipe = redis::pipe();
                    pipe.cmd("ZREM").arg(&feed).arg(theirs).ignore();
                    let () = self.query("ZREM", &pipe).await?;
                }
            }
        }
        self.durable().await?;
        Ok(target)
    }

    /// Reserves one login attempt on each failed-login counter (the account from this address,
    /// the address, the account) before the password is checked: one wave, a script per
    /// counter. When any counter is at its limit, the others' reservations are given back.
    ///
    /// # Returns
    /// The reservation, or the seconds until the full counter's window ends.
    pub async fn reserve_login(
        &self,
        email: &str,
        address: &str,
        limits: &LoginLimits,
    ) -> StoreResult<Result<LoginReservation, u64>> {
        let reservation = LoginReservation {
            counters: [
                self.keys.login_failures_pair(email, address),
                self.keys.login_failures_address(address),
                self.keys.login_failures_account(email),
            ],
        };
        let window_ms = (limits.window_secs * 1000).to_string();
        let replies = try_join_all(
            reservation
                .counters
                .iter()
                .zip([limits.per_pair, limits.per_address, limits.per_account])
                .map(|(key, limit)| {
                    let mut invocation = self.scripts.window_count.prepare_invoke();
                    invocation.key(key).arg(limit).arg(&window_ms);
                    async move { self.eval::<(u8, i64)>("window_count", &invocation).await }
                }),
        )
        .await?;
        let refused_ms = replies
            .iter()
            .filter(|(granted, _)| *granted == 0)
            .map(|(_, ttl)| *ttl)
            .max();
        let Some(ttl) = refused_ms else {
            return Ok(Ok(reservation));
        };
        let granted: Vec<&str> = reservation
            .counters
            .iter()
            .zip(&replies)
            .filter(|(_, (granted, _))| *granted == 1)
            .map(|(key, _)| key.as_str())
            .collect();
        self.refund_login(&granted).await?;
        Ok(Err((ttl.max(0) as u64).div_ceil(1000).max(1)))
    }

    /// After a successful login: the account's failures from this address are cleared and the
    /// attempt is given back to the address and the account.
    pub async fn login_succeeded(&self, reservation: &LoginReservation) -> StoreResult<()> {
        let [pair, address, account] = &reservation.counters;
        let mut clear = redis::pipe();
        clear.cmd("DEL").arg(pair).ignore();
        let refund = [address.as_str(), account.as_str()];
        let (cleared, refunded) =
            tokio::join!(self.query::<()>("DEL", &clear), self.refund_login(&refund));
        cleared.and(refunded)
    }

    /// Gives a reserved attempt back to every counter: the password could not be checked, so
    /// the attempt is no failure.
    pub async fn login_unchecked(&self, reservation: &LoginReservation) -> StoreResult<()> {
        let keys: Vec<&str> = reservation.counters.iter().map(String::as_str).collect();
        self.refund_login(&keys).await
    }

    async fn refund_login(&self, keys: &[&str]) -> StoreResult<()> {
        try_join_all(keys.iter().map(|key| {
            let mut invocation = self.scripts.login_refund.prepare_invoke();
            invocation.key(*key);
            async move { self.eval::<i64>("login_refund", &invocation).await }
        }))
        .await?;
        Ok(())
    }
}

/// Failed logins allowed in one window, per counter.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// One account from one client address: what stops guessing a password.
    pub per_pair: u64,
    /// One client address, over every account: what stops trying one password on many.
    pub per_address: u64,
    /// One account from every address: a much higher ceiling against guessing from many
    /// addresses, set so that reaching it takes far more tries than locking out by hand.
    pub per_account: u64,
    pub window_secs: u64,
}

/// The counters one login attempt was counted on, in the order pair, address, account.
#[derive(Debug)]
pub struct LoginReservation {
    counters: [String; 3],
}

/// How many of an author's latest articles a new follower's feed gets.
pub const FOLLOW_MERGE: i64 = 100;
