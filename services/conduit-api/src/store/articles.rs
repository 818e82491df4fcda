//! Articles: create, read, list, feed, update, delete, favorites and tags.

use std::collections::HashMap;

use redis::Value;

use super::{
    boolean, field, hash, int, millis, IdempotencyLease, ProfileView, Store, StoreError,
    StoreResult,
};

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
}

impl ArticleRecord {
    fn from_hash(mut map: HashMap<String, String>) -> Option<Self> {
        if map.is_empty() {
            return None;
        }
        let mut tags: Vec<String> = field(&mut map, "tags")
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        tags.sort();
        Some(Self {
            created_at: millis(&mut map, "created_at"),
            updated_at: millis(&mut map, "updated_at"),
            id: field(&mut map, "id"),
            slug: field(&mut map, "slug"),
            title: field(&mut map, "title"),
            description: field(&mut map, "description"),
            body: field(&mut map, "body"),
            tags,
            author_id: field(&mut map, "author"),
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

impl Store {
    /// Stores a new article with its indexes, tag counts and follower feeds, atomically.
    ///
    /// # Returns
    /// The new article's id.
    pub async fn create_article(
        &self,
        lease: Option<&IdempotencyLease>,
        author: &str,
        new: &NewArticle<'_>,
    ) -> StoreResult<String> {
        let tags = new.tags.join(",");
        self.write(
            "create_article",
            &self.scripts.create_article,
            lease,
            &[
                author,
                new.slug_base,
                new.title,
                new.description,
                new.body,
                &tags,
            ],
        )
        .await
    }

    /// Applies changes to the article at `slug` if `viewer` wrote it.
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
        let tags = changes.tags.as_ref().map(|t| t.join(","));
        let mut args: Vec<&str> = vec![viewer, slug];
        let pairs = [
            ("title", changes.title.as_deref()),
            ("slug_base", changes.slug_base.as_deref()),
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
        self.write("update_article", &self.scripts.update_article, lease, &args)
            .await
    }

    /// Deletes the article at `slug` with its comments, favorites and index entries, if `viewer`
    /// wrote it.
    pub async fn delete_article(
        &self,
        lease: Option<&IdempotencyLease>,
        viewer: &str,
        slug: &str,
    ) -> StoreResult<()> {
        self.write(
            "delete_article",
            &self.scripts.delete_article,
            lease,
            &[viewer, slug],
        )
        .await
        .map(|_| ())
    }

    /// Marks (or unmarks) the article at `slug` as a favorite of `viewer`.
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
        self.write(
            "favorite",
            &self.scripts.favorite,
            lease,
            &[viewer, slug, if on { "1" } else { "0" }],
        )
        .await
    }

    /// The id of the article at `slug`, in one round trip.
    pub async fn article_id(&self, slug: &str) -> StoreResult<Option<String>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(self.keys.articles_by_slug()).arg(slug);
        let (id,): (Option<String>,) = self.query("HGET", &pipe).await?;
        Ok(id)
    }

    /// The article at `slug` as `viewer` sees it, in three round trips.
    pub async fn article(&self, viewer: Option<&str>, slug: &str) -> StoreResult<ArticleView> {
        let id = self
            .article_id(slug)
            .await?
            .ok_or(StoreError::NotFound("article"))?;
        self.article_by_id(viewer, &id).await
    }

    /// The article `id` as `viewer` sees it, in two round trips.
    pub async fn article_by_id(&self, viewer: Option<&str>, id: &str) -> StoreResult<ArticleView> {
        let mut views = self.article_views(viewer, &[id.to_owned()]).await?;
        views.pop().ok_or(StoreError::NotFound("article"))
    }

    /// A page of articles, newest first, and the number of all matches, in three round trips.
    pub async fn list_articles(
        &self,
        viewer: Option<&str>,
        filter: &ArticleFilter<'_>,
        limit: u64,
        offset: u64,
    ) -> StoreResult<(Vec<ArticleView>, u64)> {
        let mut invocation = self.scripts.article_page.prepare_invoke();
        invocation
            .arg(self.keys.prefix())
            .arg(limit)
            .arg(offset)
            .arg(filter.tag)
            .arg(filter.author)
            .arg(filter.favorited);
        let reply: Vec<Value> = self.eval("article_page", &invocation).await?;
        self.page(viewer, reply).await
    }

    /// A page of the articles by authors `viewer` follows, newest first, in three round trips.
    pub async fn feed(
        &self,
        viewer: &str,
        limit: u64,
        offset: u64,
    ) -> StoreResult<(Vec<ArticleView>, u64)> {
        let feed = self.keys.feed(viewer);
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(&feed);
        if limit > 0 {
            pipe.cmd("ZREVRANGE")
                .arg(&feed)
                .arg(offset)
                .arg(offset + limit - 1);
        }
        let mut reply: Vec<Value> = self.query("ZCARD ZREVRANGE", &pipe).await?;
        let ids: Vec<Value> = if reply.len() > 1 {
            redis::from_redis_value(reply.pop().unwrap_or(Value::Nil))
                .map_err(|e| StoreError::Other(anyhow::anyhow!("bad feed reply: {e}")))?
        } else {
            Vec::new()
        };
        reply.extend(ids);
        self.page(Some(viewer), reply).await
    }

    /// Turns `[total, id, id, ...]` into views.
    async fn page(
        &self,
        viewer: Option<&str>,
        reply: Vec<Value>,
    ) -> StoreResult<(Vec<ArticleView>, u64)> {
        let mut reply = reply.into_iter();
        let total = int(reply.next().unwrap_or(Value::Int(0)))?.max(0) as u64;
        let ids = reply
            .map(redis::from_redis_value::<String>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Other(anyhow::anyhow!("bad page reply: {e}")))?;
        Ok((self.article_views(viewer, &ids).await?, total))
    }

    /// Articles, favorite state and authors for `ids`, in two pipelined round trips. Articles
    /// deleted in the meantime are left out.
    async fn article_views(
        &self,
        viewer: Option<&str>,
        ids: &[String],
    ) -> StoreResult<Vec<ArticleView>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys.article(id));
            pipe.cmd("SCARD").arg(self.keys.favorited_by(id));
            if let Some(viewer) = viewer {
                pipe.cmd("SISMEMBER")
                    .arg(self.keys.favorited_by(id))
                    .arg(viewer);
            }
        }
        let replies: Vec<Value> = self.query("HGETALL SCARD SISMEMBER", &pipe).await?;
        let mut replies = replies.into_iter();
        let mut found = Vec::with_capacity(ids.len());
        for _ in ids {
            let article = ArticleRecord::from_hash(hash(replies.next().unwrap_or(Value::Nil))?);
            let count = int(replies.next().unwrap_or(Value::Int(0)))?.max(0) as u64;
            let favorited = match viewer {
                Some(_) => boolean(replies.next().unwrap_or(Value::Int(0)))?,
                None => false,
            };
            if let Some(article) = article {
                found.push((article, count, favorited));
            }
        }
        let mut author_ids: Vec<String> = found.iter().map(|(a, ..)| a.author_id.clone()).collect();
        author_ids.sort();
        author_ids.dedup();
        let authors = self.profiles(viewer, &author_ids).await?;
        Ok(found
            .into_iter()
            .filter_map(|(article, favorites_count, favorited)| {
                let author = authors.get(&article.author_id)?.clone();
                Some(ArticleView {
                    article,
                    author,
                    favorited,
                    favorites_count,
                })
            })
            .collect())
    }

    /// Tags in use, most used first (at most 1000), in one round trip.
    pub async fn tags(&self) -> StoreResult<Vec<String>> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.keys.tags())
            .arg("+inf")
            .arg(1)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(1000);
        let (tags,): (Vec<String>,) = self.query("ZRANGE", &pipe).await?;
        Ok(tags)
    }
}
