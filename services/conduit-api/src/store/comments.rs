//! Comments on articles.

use std::collections::HashMap;

use redis::Value;

use super::{field, hash, millis, IdempotencyLease, ProfileView, Store, StoreError, StoreResult};

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

impl CommentRecord {
    fn from_hash(mut map: HashMap<String, String>) -> Option<Self> {
        if map.is_empty() {
            return None;
        }
        Some(Self {
            created_at: millis(&mut map, "created_at"),
            updated_at: millis(&mut map, "updated_at"),
            id: field(&mut map, "id"),
            author_id: field(&mut map, "author"),
            body: field(&mut map, "body"),
        })
    }
}

impl Store {
    /// Adds a comment by `viewer` to the article at `slug`.
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
        self.write(
            "add_comment",
            &self.scripts.add_comment,
            lease,
            &[viewer, slug, body],
        )
        .await
    }

    /// Deletes comment `id` from the article at `slug` if `viewer` wrote it.
    pub async fn delete_comment(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
        id: &str,
    ) -> StoreResult<()> {
        self.write(
            "delete_comment",
            &self.scripts.delete_comment,
            lease,
            &[viewer, slug, id],
        )
        .await
        .map(|_| ())
    }

    /// Comments of the article at `slug`, newest first (at most 500), in four round trips.
    pub async fn comments(
        &self,
        viewer: Option<&str>,
        slug: &str,
    ) -> StoreResult<Vec<CommentView>> {
        let article = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZREVRANGE")
            .arg(self.keys.comments(&article))
            .arg(0)
            .arg(499);
        let (ids,): (Vec<String>,) = self.query("ZREVRANGE", &pipe).await?;
        self.comment_views(viewer, &ids).await
    }

    /// One comment as `viewer` sees it, in two round trips.
    pub async fn comment(&self, viewer: Option<&str>, id: &str) -> StoreResult<CommentView> {
        self.comment_views(viewer, &[id.to_owned()])
            .await?
            .pop()
            .ok_or(StoreError::NotFound("comment"))
    }

    async fn comment_views(
        &self,
        viewer: Option<&str>,
        ids: &[String],
    ) -> StoreResult<Vec<CommentView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys.comment(id));
        }
        let replies: Vec<Value> = self.query("HGETALL", &pipe).await?;
        let comments = replies
            .into_iter()
            .map(|v| hash(v).map(CommentRecord::from_hash))
            .collect::<StoreResult<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
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
