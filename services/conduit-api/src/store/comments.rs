//! Comments on articles. An article's comments live in its slot: a sorted set of ids and one hash
//! of id -> comment JSON, so deleting the article drops them all in one O(1) step.

use serde::Deserialize;

use super::{IdempotencyLease, ProfileView, Store, StoreError, StoreResult};

/// A stored comment.
#[derive(Debug, Clone)]
pub struct CommentRecord {
    pub id: String,
    pub author_id: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A comment with its author as the viewer sees them.
#[derive(Debug, Clone)]
pub struct CommentView {
    pub comment: CommentRecord,
    pub author: ProfileView,
}

/// A comment as `add_comment.lua` stores it.
#[derive(Deserialize)]
struct StoredComment {
    id: String,
    author: String,
    body: String,
    created_at: String,
    updated_at: String,
}

impl CommentRecord {
    fn from_json(raw: &str) -> Option<Self> {
        let stored: StoredComment = serde_json::from_str(raw).ok()?;
        Some(Self {
            id: stored.id,
            author_id: stored.author,
            body: stored.body,
            created_at: stored.created_at.parse().unwrap_or(0),
            updated_at: stored.updated_at.parse().unwrap_or(0),
        })
    }
}

impl Store {
    /// Adds a comment by `viewer` to the article at `slug`.
    ///
    /// Steps: a new id (kept in the idempotency record, so a retry reuses it); the comment in
    /// the article's slot, the commit point (refused there if the article is gone); then the
    /// idempotency result.
    ///
    /// # Returns
    /// The new comment's id.
    pub async fn add_comment(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
        body: &str,
    ) -> StoreResult<String> {
        let article = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let candidate = self.next_id("comment").await?;
        let (cid, _) = self.reserve(lease, &candidate).await?;
        let keys = [
            self.keys.article(&article),
            self.keys.comment_ids(&article),
            self.keys.comments(&article),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.step(
            "add_comment",
            &self.scripts.add_comment,
            &keys,
            &[&cid, viewer, body],
        )
        .await?;
        self.idem_commit(lease, &cid).await?;
        self.durable().await?;
        Ok(cid)
    }

    /// Deletes comment `id` from the article at `slug` if `viewer` wrote it.
    pub async fn delete_comment(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
        id: &str,
    ) -> StoreResult<()> {
        let article = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let (_, fresh) = self.reserve(lease, id).await?;
        let keys = [
            self.keys.comment_ids(&article),
            self.keys.comments(&article),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.step(
            "delete_comment",
            &self.scripts.delete_comment,
            &keys,
            &[id, viewer, if fresh { "0" } else { "1" }],
        )
        .await?;
        self.idem_commit(lease, "").await?;
        self.durable().await
    }

    /// `limit` comments of the article at `slug` from `offset`, newest first, in three waves
    /// of round trips; fewer when the comments with their authors pass `max_bytes` (the first
    /// is always there), so the client asks for the next page from `offset` plus what it got.
    pub async fn comments(
        &self,
        viewer: Option<&str>,
        slug: &str,
        limit: u64,
        offset: u64,
        max_bytes: usize,
    ) -> StoreResult<Vec<CommentView>> {
        let article = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let (comments, _) = self
            .comment_page(&article, offset, limit, max_bytes)
            .await?;
        let mut views = self.comment_views(viewer, comments).await?;
        // The authors count too: many long profiles could pass the budget by themselves.
        let mut used = 0;
        let keep = views
            .iter()
            .position(|v| {
                used += v.comment.body.len()
                    + v.author.username.len()
                    + v.author.bio.len()
                    + v.author.image.len();
                used > max_bytes
            })
            .map_or(views.len(), |over| over.max(1));
        views.truncate(keep);
        Ok(views)
    }

    /// One comment of the article at `slug` as `viewer` sees it.
    pub async fn comment(
        &self,
        viewer: Option<&str>,
        slug: &str,
        id: &str,
    ) -> StoreResult<CommentView> {
        let article = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(self.keys.comments(&article)).arg(id);
        let (raw,): (Option<String>,) = self.query("HGET", &pipe).await?;
        let comment = raw
            .as_deref()
            .and_then(CommentRecord::from_json)
            .ok_or(StoreError::NotFound("comment"))?;
        self.comment_views(viewer, vec![comment])
            .await?
            .pop()
            .ok_or(StoreError::NotFound("comment"))
    }

    /// `limit` comments of article `id` from `offset`, newest first (fewer past `max_bytes`
    /// of stored comments), and how many it has.
    async fn comment_page(
        &self,
        article: &str,
        offset: u64,
        limit: u64,
        max_bytes: usize,
    ) -> StoreResult<(Vec<CommentRecord>, u64)> {
        let mut invocation = self.scripts.comment_page.prepare_invoke();
        invocation
            .key(self.keys.comment_ids(article))
            .key(self.keys.comments(article))
            .arg(offset)
            .arg(limit)
            .arg(max_bytes);
        let reply: Vec<redis::Value> = self.eval("comment_page", &invocation).await?;
        let mut reply = reply.into_iter();
        let total = super::int(reply.next().unwrap_or(redis::Value::Int(0)))?.max(0) as u64;
        let comments = reply
            .filter_map(|v| redis::from_redis_value::<String>(v).ok())
            .filter_map(|raw| CommentRecord::from_json(&raw))
            .collect();
        Ok((comments, total))
    }

    async fn comment_views(
        &self,
        viewer: Option<&str>,
        comments: Vec<CommentRecord>,
    ) -> StoreResult<Vec<CommentView>> {
        if comments.is_empty() {
            return Ok(Vec::new());
        }
        let mut author_ids: Vec<String> = comments.iter().map(|c| c.author_id.clone()).collect();
        author_ids.sort();
        author_ids.dedup();
        let authors = self.profiles(viewer, &author_ids).await?;
        Ok(comments
            .into_iter()
            .filter_map(|comment| {
                let author = authors.get(&comment.author_id)?.clone();
                Some(CommentView { comment, author })
            })
            .collect())
    }
}
