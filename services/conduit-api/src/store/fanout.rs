//! Feed fan-out: a new (or deleted) article reaches its author's followers' feeds in batches.
//!
//! The request fills the first batch of feeds itself (`CONDUIT_FANOUT_INLINE` followers, one
//! `SSCAN` page); if the author has more followers, it appends a job to a Redis Stream. Every
//! replica reads that stream through one consumer group: a job appends the job for the next
//! batch (so another replica can start on it at once), fills its own batch, and is
//! acknowledged only then. A job whose replica died is taken
//! over with `XAUTOCLAIM` after [`CLAIM_IDLE_MS`]. So every Redis call stays small however many
//! followers an author has, and the pending work lives in Redis, not in any replica. Filling a
//! feed twice changes nothing (`ZADD`/`ZREM` of the same id), so at-least-once is enough.

use std::time::Duration;

use redis::Value;

use super::{Store, StoreError, StoreResult};

/// Feeds keep the newest this many entries; older pages fall off.
pub const FEED_MAX: i64 = 800;
/// Followers per fan-out job. Each job is a few round trips whatever its size (`SSCAN`, the
/// `XADD` of the next job, one pipeline of feed writes, `XACK`), and the jobs of one article
/// follow each other, so bigger batches deliver sooner; a feed write stays one small command.
pub const JOB_BATCH: u64 = 1000;
/// Consumer group every replica reads fan-out jobs through.
const GROUP: &str = "fanout";
/// How long a worker waits before asking for jobs again when there were none.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// A job not acknowledged for this long is taken over by another replica.
pub const CLAIM_IDLE_MS: u64 = 30_000;

/// What a job does to each member of its source set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Put the article into the feeds of the author's followers.
    FeedAdd,
    /// Take the article out of the feeds of the author's followers.
    FeedRemove,
    /// Take a deleted article out of the favorites of the users who had favorited it (the set
    /// the delete left behind, removed when the last batch is done).
    Unfavorite,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::FeedAdd => "add",
            Self::FeedRemove => "rem",
            Self::Unfavorite => "unfav",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "add" => Some(Self::FeedAdd),
            "rem" => Some(Self::FeedRemove),
            "unfav" => Some(Self::Unfavorite),
            _ => None,
        }
    }
}

/// One fan-out job: apply `op` for `article` to the members of its source set from SSCAN
/// position `cursor` on (the followers of `author`, or the article's former fans).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    op: Op,
    article: String,
    author: String,
    cursor: String,
}

impl Store {
    /// Fans article `id` by `author` out to the followers' feeds (or takes it out of them):
    /// the first `inline` followers now, the rest through the job stream.
    pub(crate) async fn fan_out_article(
        &self,
        author: &str,
        id: &str,
        op: Op,
        inline: u64,
    ) -> StoreResult<()> {
        let job = Job {
            op,
            article: id.to_owned(),
            author: author.to_owned(),
            cursor: "0".to_owned(),
        };
        if inline == 0 {
            return self.enqueue(&job).await;
        }
        let next = self.fan_out_batch(&job, inline).await?;
        if next != "0" {
            self.enqueue(&Job {
                cursor: next,
                ..job
            })
            .await?;
        }
        Ok(())
    }

    /// Fills one batch of feeds for `job`.
    ///
    /// # Returns
    /// The SSCAN cursor of the next batch that the caller still has to queue (`"0"`: none).
    ///
    /// Feed batches queue the next batch themselves before filling this one, so the other
    /// replicas' workers take it up meanwhile and a large following is filled in parallel (a
    /// batch redone after a crash fills the same feeds again, which changes nothing). The
    /// batches of former fans go one after another: the last one removes the set they read.
    async fn fan_out_batch(&self, job: &Job, count: u64) -> StoreResult<String> {
        let source = match job.op {
            Op::FeedAdd | Op::FeedRemove => self.keys.followers(&job.author),
            Op::Unfavorite => self.keys.fans_gone(&job.article),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SSCAN")
            .arg(&source)
            .arg(&job.cursor)
            .arg("COUNT")
            .arg(count.max(1));
        let ((next, members),): ((String, Vec<String>),) = self.query("SSCAN", &pipe).await?;
        let queued_now = job.op != Op::Unfavorite && next != "0";
        if queued_now {
            self.enqueue(&Job {
                cursor: next.clone(),
                ..job.clone()
            })
            .await?;
        }
        let pipes: Vec<redis::Pipeline> = members
            .iter()
            .map(|member| {
                let mut pipe = redis::pipe();
                if job.op == Op::Unfavorite {
                    pipe.cmd("ZREM")
                        .arg(self.keys.favorites(member))
                        .arg(&job.article);
                    return pipe;
                }
                let feed = self.keys.feed(member);
                if job.op == Op::FeedAdd {
                    pipe.cmd("ZADD")
                        .arg(&feed)
                        .arg(&job.article)
                        .arg(&job.article)
                        .cmd("ZREMRANGEBYRANK")
                        .arg(&feed)
                        .arg(0)
                        .arg(-(FEED_MAX + 1));
                } else {
                    pipe.cmd("ZREM").arg(&feed).arg(&job.article);
                }
                pipe
            })
            .collect();
        self.query_many(
            if job.op == Op::FeedAdd {
                "ZADD ZREMRANGEBYRANK"
            } else {
                "ZREM"
            },
            &pipes,
        )
        .await?;
        if next == "0" && job.op == Op::Unfavorite {
            let mut pipe = redis::pipe();
            pipe.cmd("UNLINK").arg(&source).ignore();
            let () = self.query("UNLINK", &pipe).await?;
        }
        Ok(if queued_now { "0".to_owned() } else { next })
    }

    async fn enqueue(&self, job: &Job) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(self.keys.fanout_jobs())
            .arg("*")
            .arg("op")
            .arg(job.op.name())
            .arg("article")
            .arg(&job.article)
            .arg("author")
            .arg(&job.author)
            .arg("cursor")
            .arg(&job.cursor)
            .ignore();
        let () = self.query("XADD", &pipe).await?;
        Ok(())
    }

    /// Runs one job and acknowledges it once its batch is filled and the next one queued.
    async fn run_job(&self, entry_id: &str, job: &Job) -> StoreResult<()> {
        let next = self.fan_out_batch(job, JOB_BATCH).await?;
        if next != "0" {
            self.enqueue(&Job {
                cursor: next,
                ..job.clone()
            })
            .await?;
        }
        let stream = self.keys.fanout_jobs();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(entry_id)
            .ignore();
        let () = self.query("XACK XDEL", &pipe).await?;
        Ok(())
    }

    /// Reads fan-out jobs as consumer `consumer` until the task is dropped. Errors (Redis
    /// down) are logged and retried after a pause; the jobs wait in Redis meanwhile.
    pub async fn run_fanout_worker(self, consumer: String) {
        let stream = self.keys.fanout_jobs();
        let mut last_claim = tokio::time::Instant::now();
        loop {
            let claim = last_claim.elapsed() >= Duration::from_secs(5);
            let batch = if claim {
                last_claim = tokio::time::Instant::now();
                self.claim_stale_jobs(&stream, &consumer).await
            } else {
                self.read_jobs(&stream, &consumer).await
            };
            let jobs = match batch {
                Ok(jobs) => jobs,
                Err(err) => {
                    log::warn!("fan-out worker cannot read jobs error={err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            for (entry_id, job) in jobs {
                match job {
                    Some(job) => {
                        if let Err(err) = self.run_job(&entry_id, &job).await {
                            // Left pending: this or another replica takes it over later.
                            log::warn!("fan-out job failed article={} error={err}", job.article);
                        }
                    }
                    None => {
                        log::warn!("dropping a malformed fan-out job id={entry_id}");
                        let mut pipe = redis::pipe();
                        pipe.cmd("XACK")
                            .arg(&stream)
                            .arg(GROUP)
                            .arg(&entry_id)
                            .ignore();
                        let _: StoreResult<()> = self.query("XACK", &pipe).await;
                    }
                }
            }
        }
    }

    /// New jobs for `consumer`; creates the consumer group the first time.
    async fn read_jobs(
        &self,
        stream: &str,
        consumer: &str,
    ) -> StoreResult<Vec<(String, Option<Job>)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(16)
            .arg("STREAMS")
            .arg(stream)
            .arg(">");
        match self.query::<(Value,)>("XREADGROUP", &pipe).await {
            Ok((reply,)) => Ok(stream_entries(reply)),
            Err(StoreError::Other(err)) if err.to_string().contains("NOGROUP") => {
                self.create_group(stream).await?;
                Ok(Vec::new())
            }
            Err(err) => Err(err),
        }
    }

    async fn create_group(&self, stream: &str) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self.query::<(String,)>("XGROUP", &pipe).await {
            Ok(_) => Ok(()),
            Err(StoreError::Other(err)) if err.to_string().contains("BUSYGROUP") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Jobs another consumer took and left unacknowledged for [`CLAIM_IDLE_MS`].
    async fn claim_stale_jobs(
        &self,
        stream: &str,
        consumer: &str,
    ) -> StoreResult<Vec<(String, Option<Job>)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(CLAIM_IDLE_MS)
            .arg("0-0")
            .arg("COUNT")
            .arg(16);
        match self.query::<(Value,)>("XAUTOCLAIM", &pipe).await {
            Ok((Value::Array(parts),)) => {
                Ok(parts.into_iter().nth(1).map(entries).unwrap_or_default())
            }
            Ok(_) => Ok(Vec::new()),
            Err(StoreError::Other(err)) if err.to_string().contains("NOGROUP") => {
                self.create_group(stream).await?;
                Ok(Vec::new())
            }
            Err(err) => Err(err),
        }
    }
}

/// The entries of an `XREADGROUP` reply (`[[stream, entries]]`, or nil).
fn stream_entries(reply: Value) -> Vec<(String, Option<Job>)> {
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .flat_map(entries)
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]` as jobs (`None` for an entry that is not a job).
fn entries(value: Value) -> Vec<(String, Option<Job>)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let (id, fields): (String, Option<Vec<String>>) = redis::from_redis_value(item).ok()?;
            let job = fields.and_then(|fields| {
                let get = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|pair| pair.first().map(String::as_str) == Some(name))
                        .and_then(|pair| pair.get(1).cloned())
                };
                Some(Job {
                    op: Op::parse(&get("op")?)?,
                    article: get("article")?,
                    author: get("author")?,
                    cursor: get("cursor")?,
                })
            });
            Some((id, job))
        })
        .collect()
}

/// A consumer name for this process: the replica id and a random suffix (ids may repeat).
pub fn consumer_name(replica: &str) -> String {
    format!(
        "{}-{:08x}",
        super::keys::escape(replica),
        rand::random::<u32>()
    )
}
