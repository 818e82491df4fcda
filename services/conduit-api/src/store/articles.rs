//! Articles: create, read, list, feed, update, delete, favorites and tags.

use std::collections::HashMap;

use redis::Value;

use super::fanout::Op;
use super::keys::{Keys, ARTICLE_BUCKETS, TAG_BUCKETS};
use super::{hash, int, IdempotencyLease, ProfileView, Store, StoreError, StoreResult};

/// A stored article.
#[derive(Debug, Clone)]
pub struct ArticleRecord {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub body: String,
    /// Sorted tag names.
    pub tags: Vec<String>,
    pub author_id: String,
    /// Milliseconds since the Unix epoch (Redis server time).
    pub created_at: i64,
    pub updated_at: i64,
    /// The favorites count the favorite step stores with the article; none for an article
    /// stored before the count was kept (its favorited-by set is counted instead).
    pub favorites: Option<u64>,
}

impl ArticleRecord {
    /// An article from the fields of its hash, each taken by name; none when the hash is gone.
    fn from_fields(mut take: impl FnMut(&str) -> Option<String>) -> Option<Self> {
        let id = take("id").filter(|id| !id.is_empty())?;
        let mut tags: Vec<String> = take("tags")
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        tags.sort();
        let millis = |v: Option<String>| v.and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(Self {
            id,
            slug: take("slug").unwrap_or_default(),
            title: take("title").unwrap_or_default(),
            description: take("description").unwrap_or_default(),
            body: take("body").unwrap_or_default(),
            tags,
            author_id: take("author").unwrap_or_default(),
            created_at: millis(take("created_at")),
            updated_at: millis(take("updated_at")),
            favorites: take("favorites").and_then(|v| v.parse().ok()),
        })
    }

    /// From `HGETALL`.
    fn from_hash(mut map: HashMap<String, String>) -> Option<Self> {
        Self::from_fields(|name| map.remove(name))
    }

    /// From `HMGET` of [`LIST_FIELDS`], in that order (no body): no map in between.
    fn from_list_fields(mut values: Vec<Option<String>>) -> Option<Self> {
        Self::from_fields(|name| {
            let i = LIST_FIELDS.iter().position(|f| *f == name)?;
            values.get_mut(i)?.take()
        })
    }
}

/// An article with what the viewer needs to render it.
#[derive(Debug, Clone)]
pub struct ArticleView {
    pub article: ArticleRecord,
    pub author: ProfileView,
    pub favorited: bool,
    pub favorites_count: u64,
}

/// A validated new article.
#[derive(Debug)]
pub struct NewArticle<'a> {
    pub slug_base: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub body: &'a str,
    pub tags: &'a [String],
}

/// Validated changes to an article; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ArticleChanges {
    pub title: Option<String>,
    pub slug_base: Option<String>,
    pub description: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// Filters of the article list; empty strings mean no filter.
#[derive(Debug, Default)]
pub struct ArticleFilter<'a> {
    pub tag: &'a str,
    pub author: &'a str,
    pub favorited: &'a str,
}

/// The fields an article list shows: everything but the body.
const LIST_FIELDS: [&str; 9] = [
    "id",
    "slug",
    "title",
    "description",
    "tags",
    "author",
    "created_at",
    "updated_at",
    "favorites",
];

/// Ids the unfiltered list reads from each global-index bucket beyond the bucket's share of the
/// page, for gaps that deletions leave (`newest_of_all`).
const BUCKET_MARGIN: u64 = 2;

/// How many other slugs a new article tries before its base slug gets its id appended.
const SLUG_TRIES: usize = 3;

impl Store {
    /// Claims a slug for article `id`: `base` if free, else `base-<id>`, then `base-<id>-<n>`.
    /// A claim whose article is gone or renamed is taken over after the grace period.
    async fn claim_slug(&self, base: &str, id: &str) -> StoreResult<String> {
        let mut candidate = base.to_owned();
        for n in 0..SLUG_TRIES + 1 {
            let claim = self.keys.slug_claim(&candidate);
            match self.claim(&claim, id, None).await? {
                None => return Ok(candidate),
                Some((owner, age)) if age >= super::CLAIM_GRACE_MS => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("HGET").arg(self.keys.article(&owner)).arg("slug");
                    let (slug,): (Option<String>,) = self.query("HGET", &pipe).await?;
                    if slug.as_deref() != Some(candidate.as_str())
                        && self.claim(&claim, id, Some(&owner)).await?.is_none()
                    {
                        log::info!("took over a stale slug claim owner={owner}");
                        return Ok(candidate);
                    }
                }
                Some(_) => {}
            }
            candidate = match n {
                0 => format!("{base}-{id}"),
                n => format!("{base}-{id}-{}", n + 1),
            };
        }
        // Every candidate is held by a live article: a random suffix cannot collide in practice.
        let candidate = format!("{base}-{id}-{:08x}", rand::random::<u32>());
        match self
            .claim(&self.keys.slug_claim(&candidate), id, None)
            .await?
        {
            None => Ok(candidate),
            Some(_) => Err(StoreError::Other(anyhow::anyhow!(
                "no free slug for {base}"
            ))),
        }
    }

    /// Puts article `id` into (or out of) the index and count of each tag, one step per tag.
    async fn retag(&self, id: &str, tags: &[String], on: bool) -> StoreResult<()> {
        futures_util::future::try_join_all(tags.iter().map(|tag| async move {
            let mut invocation = self.scripts.tag.prepare_invoke();
            invocation
                .key(self.keys.tagged(tag))
                .key(self.keys.tag_counts_of(tag))
                .arg(id)
                .arg(tag)
                .arg(if on { "1" } else { "0" });
            self.eval::<i64>("tag", &invocation).await
        }))
        .await?;
        Ok(())
    }

    /// Stores a new article with its indexes, tag counts and follower feeds.
    ///
    /// Steps: a new id (kept in the idempotency record, so a retry reuses it); the slug claim;
    /// the article hash, the commit point (from here it is readable by slug); the author's list
    /// with the idempotency result; then tag indexes, the global index and the followers' feeds.
    /// Every step is idempotent, so a retry with the same key finishes the tail.
    ///
    /// # Returns
    /// The new article's id.
    pub async fn create_article(
        &self,
        lease: Option<&IdempotencyLease>,
        author: &str,
        new: &NewArticle<'_>,
    ) -> StoreResult<String> {
        let candidate = self.next_id("article").await?;
        let (id, _) = self.reserve(lease, &candidate).await?;
        let slug = self.claim_slug(new.slug_base, &id).await?;
        self.step_done("slug_claim")?;
        let tags = new.tags.join(",");
        let mut invocation = self.scripts.put_article.prepare_invoke();
        invocation
            .key(self.keys.article(&id))
            .arg(&id)
            .arg(&slug)
            .arg(new.title)
            .arg(new.description)
            .arg(new.body)
            .arg(&tags)
            .arg(author);
        let _: i64 = self.eval("put_article", &invocation).await?;
        self.step_done("put_article")?;
        let authored = self.keys.authored(author);
        self.commit(
            "create_article",
            &self.scripts.commit_member,
            lease,
            &[&authored],
            &["zadd", &id, &id],
        )
        .await?;
        self.step_done("author_list")?;
        self.index_article(author, &id, new.tags).await?;
        self.durable().await?;
        Ok(id)
    }

    /// The idempotent tail of creating article `id`: tags, global index, followers' feeds (the
    /// first batch now, the rest by the fan-out workers: `fanout.rs`).
    async fn index_article(&self, author: &str, id: &str, tags: &[String]) -> StoreResult<()> {
        self.retag(id, tags, true).await?;
        self.step_done("tags")?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.keys.articles_bucket(Keys::article_bucket(id)))
            .arg(id)
            .arg(id)
            .ignore();
        let () = self.query("ZADD", &pipe).await?;
        self.step_done("global_index")?;
        self.fan_out_article(author, id, Op::FeedAdd, self.fanout_inline)
            .await
    }

    /// The article at `slug` (id, author, slug, tags), or `NotFound`; with a lease, the id is
    /// recorded first so a retry acts on the same article even after its slug changed.
    ///
    /// # Returns
    /// The id, whether this is the first attempt, and the article's current fields if it exists.
    async fn target_article(
        &self,
        lease: Option<&IdempotencyLease>,
        slug: &str,
    ) -> StoreResult<(String, bool, Option<ArticleRecord>)> {
        let found = self.article_id(slug).await?.unwrap_or_default();
        let (id, fresh) = self.reserve(lease, &found).await?;
        if id.is_empty() {
            return Err(StoreError::NotFound("article"));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.keys.article(&id))
            .arg(&LIST_FIELDS[..]);
        let (fields,): (Vec<Option<String>>,) = self.query("HMGET", &pipe).await?;
        let record = ArticleRecord::from_list_fields(fields);
        Ok((id, fresh, record))
    }

    /// Applies changes to the article at `slug` if `viewer` wrote it.
    ///
    /// Steps: a claim on the new slug; the article hash (the commit point, which also notes
    /// the tags dropped in `tags_gone`); the idempotency result; then the old slug's claim is
    /// given back and the tag indexes follow: the new tags, then the dropped ones (read from
    /// the commit's answer, so a retry or the next update finishes what a crash left).
    ///
    /// # Returns
    /// The article id (its slug may have changed).
    pub async fn update_article(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
        changes: &ArticleChanges,
    ) -> StoreResult<String> {
        let (id, _, current) = self.target_article(lease, slug).await?;
        let current = current.ok_or(StoreError::NotFound("article"))?;
        if current.author_id != viewer {
            return Err(StoreError::Forbidden("article"));
        }
        let mut new_slug = None;
        if let Some(base) = changes.slug_base.as_deref() {
            if base != current.slug {
                new_slug = Some(self.claim_slug(base, &id).await?);
                self.step_done("new_slug_claim")?;
            }
        }
        let tags = changes.tags.as_ref().map(|t| t.join(","));
        let mut args: Vec<&str> = vec![viewer];
        let pairs = [
            ("title", changes.title.as_deref()),
            ("slug", new_slug.as_deref()),
            ("description", changes.description.as_deref()),
            ("body", changes.body.as_deref()),
            ("tags", tags.as_deref()),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                args.push(name);
                args.push(value);
            }
        }
        let article = self.keys.article(&id);
        let tags_gone = match self.update_step(&article, &args).await {
            Ok(gone) => gone,
            Err(err) => {
                if let Some(claimed) = &new_slug {
                    self.release(&self.keys.slug_claim(claimed), &id).await?;
                }
                return Err(err);
            }
        };
        self.step_done("update_article")?;
        self.idem_commit(lease, &id).await?;
        if new_slug.is_some() {
            self.release(&self.keys.slug_claim(&current.slug), &id)
                .await?;
            self.step_done("old_slug_released")?;
        }
        if let Some(new_tags) = &changes.tags {
            self.retag(&id, new_tags, true).await?;
            self.step_done("tags_added")?;
        }
        if !tags_gone.is_empty() {
            let gone: Vec<String> = tags_gone.split(',').map(str::to_owned).collect();
            self.retag(&id, &gone, false).await?;
            let mut invocation = self.scripts.tags_gone_done.prepare_invoke();
            invocation.key(&article).arg(&tags_gone);
            self.eval::<i64>("tags_gone_done", &invocation).await?;
        }
        self.durable().await?;
        Ok(id)
    }

    /// The commit step of an update (`update_article.lua`).
    ///
    /// # Returns
    /// The tags the article no longer has whose indexes may still list it (comma-joined).
    async fn update_step(&self, article: &str, args: &[&str]) -> StoreResult<String> {
        let mut invocation = self.scripts.update_article.prepare_invoke();
        invocation.key(article);
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Vec<String> = self.eval("update_article", &invocation).await?;
        if reply.first().map(String::as_str) == Some("ok") {
            return Ok(reply.into_iter().nth(2).unwrap_or_default());
        }
        super::script_outcome(reply)
    }

    /// Deletes the article at `slug` with its comments, favorites and index entries, if `viewer`
    /// wrote it.
    ///
    /// Steps: the article leaves every index (tags, global, author's list, followers' feeds,
    /// fans' favorites) while it still exists; then the article's slot goes in one step, the
    /// commit point; then its slug claim is released. A crash before the commit leaves a whole
    /// article missing from some lists (still readable by slug); the retry finishes.
    pub async fn delete_article(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
    ) -> StoreResult<()> {
        let (id, fresh, current) = self.target_article(lease, slug).await?;
        let Some(current) = current else {
            if fresh {
                return Err(StoreError::NotFound("article"));
            }
            // A retry of a delete that committed: finish the tail.
            self.fan_out_article(viewer, &id, Op::Unfavorite, self.fanout_inline)
                .await?;
            self.release(&self.keys.slug_claim(slug), &id).await?;
            self.idem_commit(lease, "").await?;
            return self.durable().await;
        };
        if current.author_id != viewer {
            return Err(StoreError::Forbidden("article"));
        }
        self.retag(&id, &current.tags, false).await?;
        self.step_done("tags_removed")?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.keys.articles_bucket(Keys::article_bucket(&id)))
            .arg(&id)
            .ignore();
        let () = self.query("ZREM", &pipe).await?;
        self.step_done("global_index_removed")?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.keys.authored(viewer))
            .arg(&id)
            .ignore();
        let () = self.query("ZREM", &pipe).await?;
        self.step_done("delete_from_author_list")?;
        self.fan_out_article(viewer, &id, Op::FeedRemove, self.fanout_inline)
            .await?;
        self.step_done("feeds_removed")?;
        let keys = [
            self.keys.article(&id),
            self.keys.favorited_by(&id),
            self.keys.comment_ids(&id),
            self.keys.comments(&id),
            self.keys.fans_gone(&id),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.step(
            "delete_article",
            &self.scripts.delete_article,
            &keys,
            &[viewer],
        )
        .await?;
        self.step_done("delete_article")?;
        self.fan_out_article(viewer, &id, Op::Unfavorite, self.fanout_inline)
            .await?;
        self.step_done("fans_unfavorited")?;
        self.release(&self.keys.slug_claim(&current.slug), &id)
            .await?;
        self.idem_commit(lease, "").await?;
        self.durable().await
    }

    /// Marks (or unmarks) the article at `slug` as a favorite of `viewer`.
    ///
    /// Steps: the viewer's favorites (the commit point, with the idempotency result); then the
    /// article's favorited-by set and the count stored with the article. A retry repeats the
    /// second step.
    ///
    /// # Returns
    /// The article id.
    pub async fn favorite(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
        on: bool,
    ) -> StoreResult<String> {
        let (id, _, current) = self.target_article(lease, slug).await?;
        if current.is_none() {
            return Err(StoreError::NotFound("article"));
        }
        let favorites = self.keys.favorites(viewer);
        self.commit(
            "favorite",
            &self.scripts.commit_member,
            lease,
            &[&favorites],
            &[if on { "zadd" } else { "zrem" }, &id, &id],
        )
        .await?;
        self.step_done("favorite_commit")?;
        let mut invocation = self.scripts.favorited_by.prepare_invoke();
        invocation
            .key(self.keys.favorited_by(&id))
            .key(self.keys.article(&id))
            .arg(viewer)
            .arg(if on { "1" } else { "0" });
        self.eval::<i64>("favorited_by", &invocation).await?;
        self.durable().await?;
        Ok(id)
    }

    /// The id of the article at `slug`, in one round trip.
    pub async fn article_id(&self, slug: &str) -> StoreResult<Option<String>> {
        self.claim_owner(&self.keys.slug_claim(slug)).await
    }

    /// The article at `slug` as `viewer` sees it, in three waves of round trips.
    pub async fn article(&self, viewer: Option<&str>, slug: &str) -> StoreResult<ArticleView> {
        let id = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let view = self.article_by_id(viewer, &id).await?;
        if view.article.slug != slug {
            // A claim left behind by a rename or a failed write.
            return Err(StoreError::NotFound("article"));
        }
        Ok(view)
    }

    /// The article `id` as `viewer` sees it, in two waves of round trips.
    pub async fn article_by_id(&self, viewer: Option<&str>, id: &str) -> StoreResult<ArticleView> {
        let mut views = self.article_views(viewer, &[id.to_owned()], true).await?;
        views.pop().ok_or(StoreError::NotFound("article"))
    }

    /// A page of articles, newest first, and the number of all matches.
    ///
    /// Without filters the page merges the newest `offset + limit` ids of every global-index
    /// bucket. With one filter it reads one sorted set; with several it intersects them here.
    /// Entries whose article is gone, or no longer matches a filter, are left out.
    pub async fn list_articles(
        &self,
        viewer: Option<&str>,
        filter: &ArticleFilter<'_>,
        limit: u64,
        offset: u64,
    ) -> StoreResult<(Vec<ArticleView>, u64)> {
        let mut sets = Vec::new();
        if !filter.tag.is_empty() {
            sets.push(self.keys.tagged(filter.tag));
        }
        let mut author_id = None;
        for (name, is_author) in [(filter.author, true), (filter.favorited, false)] {
            if name.is_empty() {
                continue;
            }
            let Some(uid) = self.user_id_by_username(name).await? else {
                return Ok((Vec::new(), 0));
            };
            if is_author {
                sets.push(self.keys.authored(&uid));
                author_id = Some(uid);
            } else {
                sets.push(self.keys.favorites(&uid));
            }
        }
        let (ids, total) = match sets.as_slice() {
            [] => self.newest_of_all(limit, offset).await?,
            [set] => self.page_of(set, limit, offset).await?,
            _ => {
                let pipes: Vec<redis::Pipeline> = sets
                    .iter()
                    .map(|set| {
                        let mut pipe = redis::pipe();
                        pipe.cmd("ZRANGE").arg(set).arg(0).arg(-1);
                        pipe
                    })
                    .collect();
                let replies = self.query_many("ZRANGE", &pipes).await?;
                let mut members: Vec<Vec<u64>> = replies
                    .into_iter()
                    .map(|reply| ids_of(reply.into_iter().next().unwrap_or(Value::Nil)))
                    .collect::<StoreResult<_>>()?;
                let mut all = members.pop().unwrap_or_default();
                for other in &members {
                    all.retain(|id| other.binary_search(id).is_ok());
                }
                let total = all.len() as u64;
                let ids = all
                    .iter()
                    .rev()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .map(u64::to_string)
                    .collect();
                (ids, total)
            }
        };
        let mut views = self.article_views(viewer, &ids, false).await?;
        views.retain(|v| {
            (filter.tag.is_empty() || v.article.tags.iter().any(|t| t == filter.tag))
                && author_id.as_ref().is_none_or(|a| *a == v.article.author_id)
        });
        Ok((views, total))
    }

    /// `limit` ids from `offset` of one sorted set, newest first, and its size: one round trip.
    async fn page_of(&self, set: &str, limit: u64, offset: u64) -> StoreResult<(Vec<String>, u64)> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(set);
        if limit > 0 {
            pipe.cmd("ZREVRANGE")
                .arg(set)
                .arg(offset)
                .arg(offset + limit - 1);
        }
        let reply: Vec<Value> = self.query("ZCARD ZREVRANGE", &pipe).await?;
        let mut reply = reply.into_iter();
        let total = int(reply.next().unwrap_or(Value::Int(0)))?.max(0) as u64;
        let ids: Vec<String> = match reply.next() {
            Some(value) => redis::from_redis_value(value)
                .map_err(|e| StoreError::Other(anyhow::anyhow!("bad page reply: {e}")))?,
            None => Vec::new(),
        };
        Ok((ids, total))
    }

    /// The newest articles of the whole site, from the global-index buckets, and their number.
    ///
    /// Ids are handed out in order and an article's bucket is its id mod [`ARTICLE_BUCKETS`], so
    /// the newest `offset + limit` ids fall nearly evenly on the buckets. The first wave reads
    /// each bucket's size and its share of the page plus [`BUCKET_MARGIN`]; a bucket that may
    /// hide a wanted id (deletions left it holding more of the newest than that) is read further
    /// in a second wave, so the page is exact either way. Ids read: about `offset + limit + 32`,
    /// where reading the whole page from every bucket would be 16 times `offset + limit`.
    async fn newest_of_all(&self, limit: u64, offset: u64) -> StoreResult<(Vec<String>, u64)> {
        let wanted = offset + limit;
        let first = (wanted.div_ceil(ARTICLE_BUCKETS) + BUCKET_MARGIN).min(wanted);
        let pipes: Vec<redis::Pipeline> = (0..ARTICLE_BUCKETS)
            .map(|bucket| {
                let key = self.keys.articles_bucket(bucket);
                let mut pipe = redis::pipe();
                pipe.cmd("ZCARD").arg(&key);
                if first > 0 {
                    pipe.cmd("ZREVRANGE").arg(&key).arg(0).arg(first - 1);
                }
                pipe
            })
            .collect();
        let replies = self.query_many("ZCARD ZREVRANGE", &pipes).await?;
        let mut total = 0u64;
        // Per bucket: its size and the ids read from it, ascending.
        let mut buckets = Vec::with_capacity(replies.len());
        for reply in replies {
            let mut reply = reply.into_iter();
            let size = int(reply.next().unwrap_or(Value::Int(0)))?.max(0) as u64;
            total += size;
            let ids = match reply.next() {
                Some(value) => ids_of(value)?,
                None => Vec::new(),
            };
            buckets.push((size, ids));
        }
        let mut all: Vec<u64> = buckets
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        // The `wanted`-th newest id read so far: a bucket whose oldest id read is older than it
        // holds no other id of the page. Without it (fewer ids read), every cut bucket may.
        let cutoff = (wanted as usize)
            .checked_sub(1)
            .and_then(|i| all.get(i).copied());
        let further: Vec<(u64, u64, u64)> = buckets
            .iter()
            .enumerate()
            .filter_map(|(bucket, (size, ids))| {
                let read = ids.len() as u64;
                let oldest = *ids.first()?;
                let cut = read < (*size).min(wanted);
                (cut && cutoff.is_none_or(|c| oldest > c)).then_some((
                    bucket as u64,
                    oldest,
                    wanted - read,
                ))
            })
            .collect();
        if !further.is_empty() {
            // By score (the id), below the oldest id read: an article added in between
            // moves no rank and is not read twice.
            let pipes: Vec<redis::Pipeline> = further
                .iter()
                .map(|&(bucket, oldest, count)| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("ZRANGE")
                        .arg(self.keys.articles_bucket(bucket))
                        .arg(format!("({oldest}"))
                        .arg("-inf")
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(count);
                    pipe
                })
                .collect();
            for reply in self.query_many("ZRANGE", &pipes).await? {
                all.extend(ids_of(reply.into_iter().next().unwrap_or(Value::Nil))?);
            }
            all.sort_unstable_by(|a, b| b.cmp(a));
        }
        let ids = all
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|id| id.to_string())
            .collect();
        Ok((ids, total))
    }

    /// A page of the articles by authors `viewer` follows, newest first.
    pub async fn feed(
        &self,
        viewer: &str,
        limit: u64,
        offset: u64,
    ) -> StoreResult<(Vec<ArticleView>, u64)> {
        let (ids, total) = self.page_of(&self.keys.feed(viewer), limit, offset).await?;
        Ok((self.article_views(Some(viewer), &ids, false).await?, total))
    }

    /// Articles, favorite state and authors for `ids`, in two waves of round trips: the
    /// articles (one small pipeline per article's slot) with one `ZMSCORE` over the viewer's
    /// favorites, then the authors once each. Lists leave the body out; the favorites count
    /// comes with the article. Articles deleted in the meantime are left out.
    async fn article_views(
        &self,
        viewer: Option<&str>,
        ids: &[String],
        with_body: bool,
    ) -> StoreResult<Vec<ArticleView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipes: Vec<redis::Pipeline> = ids
            .iter()
            .map(|id| {
                let mut pipe = redis::pipe();
                if with_body {
                    pipe.cmd("HGETALL").arg(self.keys.article(id));
                } else {
                    pipe.cmd("HMGET")
                        .arg(self.keys.article(id))
                        .arg(&LIST_FIELDS[..]);
                }
                pipe
            })
            .collect();
        if let Some(viewer) = viewer {
            let mut pipe = redis::pipe();
            pipe.cmd("ZMSCORE")
                .arg(self.keys.favorites(viewer))
                .arg(ids);
            pipes.push(pipe);
        }
        let operation = if with_body {
            "HGETALL ZMSCORE"
        } else {
            "HMGET ZMSCORE"
        };
        let mut replies = self.query_many(operation, &pipes).await?;
        let favorited: Vec<bool> = match viewer {
            Some(_) => {
                let reply = replies.pop().and_then(|r| r.into_iter().next());
                let scores: Vec<Option<f64>> = redis::from_redis_value(reply.unwrap_or(Value::Nil))
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad favorites reply: {e}")))?;
                scores.into_iter().map(|s| s.is_some()).collect()
            }
            None => vec![false; ids.len()],
        };
        let mut found = Vec::with_capacity(ids.len());
        for (reply, favorited) in replies.into_iter().zip(favorited) {
            let first = reply.into_iter().next().unwrap_or(Value::Nil);
            let article = if with_body {
                ArticleRecord::from_hash(hash(first)?)
            } else {
                let fields: Vec<Option<String>> = redis::from_redis_value(first)
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad article reply: {e}")))?;
                ArticleRecord::from_list_fields(fields)
            };
            if let Some(article) = article {
                found.push((article, favorited));
            }
        }
        let mut author_ids: Vec<String> = found.iter().map(|(a, _)| a.author_id.clone()).collect();
        author_ids.sort();
        author_ids.dedup();
        let uncounted: Vec<String> = found
            .iter()
            .filter(|(a, _)| a.favorites.is_none())
            .map(|(a, _)| a.id.clone())
            .collect();
        let (authors, counted) = futures_util::future::try_join(
            self.profiles(viewer, &author_ids),
            self.favorite_counts(&uncounted),
        )
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|(article, favorited)| {
                let author = authors.get(&article.author_id)?.clone();
                let favorites_count = article
                    .favorites
                    .or_else(|| counted.get(&article.id).copied())
                    .unwrap_or(0);
                Some(ArticleView {
                    article,
                    author,
                    favorited,
                    favorites_count,
                })
            })
            .collect())
    }

    /// The size of each article's favorited-by set: for articles stored before their count
    /// was kept with them (none, once every such article has been favorited again).
    async fn favorite_counts(&self, ids: &[String]) -> StoreResult<HashMap<String, u64>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let pipes: Vec<redis::Pipeline> = ids
            .iter()
            .map(|id| {
                let mut pipe = redis::pipe();
                pipe.cmd("SCARD").arg(self.keys.favorited_by(id));
                pipe
            })
            .collect();
        let replies = self.query_many("SCARD", &pipes).await?;
        ids.iter()
            .zip(replies)
            .map(|(id, reply)| {
                let n = int(reply.into_iter().next().unwrap_or(Value::Int(0)))?;
                Ok((id.clone(), n.max(0) as u64))
            })
            .collect()
    }

    /// Tags in use, most used first (at most 1000): the top of every tag bucket, merged, in
    /// one wave of [`TAG_BUCKETS`] round trips.
    pub async fn tags(&self) -> StoreResult<Vec<String>> {
        let pipes: Vec<redis::Pipeline> = (0..TAG_BUCKETS)
            .map(|bucket| {
                let mut pipe = redis::pipe();
                pipe.cmd("ZRANGE")
                    .arg(self.keys.tag_counts(bucket))
                    .arg("+inf")
                    .arg(1)
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1000)
                    .arg("WITHSCORES");
                pipe
            })
            .collect();
        let replies = self.query_many("ZRANGE", &pipes).await?;
        let mut all: Vec<(String, f64)> = Vec::new();
        for reply in replies {
            let pairs: Vec<(String, f64)> =
                redis::from_redis_value(reply.into_iter().next().unwrap_or(Value::Nil))
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("bad tags reply: {e}")))?;
            all.extend(pairs);
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        Ok(all.into_iter().take(1000).map(|(tag, _)| tag).collect())
    }
}

/// Numeric ids of a sorted-set reply, ascending.
fn ids_of(value: Value) -> StoreResult<Vec<u64>> {
    let ids: Vec<String> = redis::from_redis_value(value)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad id list: {e}")))?;
    let mut ids: Vec<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    ids.sort_unstable();
    Ok(ids)
}
