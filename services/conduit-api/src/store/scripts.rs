//! The Lua scripts, one file each under `lua/`. Each runs on one slot: every key it touches comes
//! in `KEYS` (none is built inside Lua), and every key of one call shares a hash tag (`keys.rs`).
//!
//! A write that spans slots is a sequence of such steps (see the store methods and
//! docs/DATA_MODEL.md): idempotent steps, one commit point, readers that skip what is not whole.
//! Commit steps in the caller's user slot are wrapped in `prologue.lua`/`epilogue.lua`, which
//! record the request's idempotency result in the same atomic step as the write.

use redis::Script;

const PROLOGUE: &str = include_str!("lua/prologue.lua");
const EPILOGUE: &str = include_str!("lua/epilogue.lua");

/// The compiled scripts, loaded once per process (they are code, not state).
pub struct Scripts {
    pub commit_member: Script,
    pub update_user: Script,
    pub claim: Script,
    pub release: Script,
    pub reserve: Script,
    pub idem_commit: Script,
    pub put_user: Script,
    pub put_article: Script,
    pub update_article: Script,
    pub delete_article: Script,
    pub tag: Script,
    pub favorited_by: Script,
    pub tags_gone_done: Script,
    pub add_comment: Script,
    pub delete_comment: Script,
    pub comment_page: Script,
    pub idempotency_begin: Script,
    pub idempotency_finish: Script,
    pub idempotency_release: Script,
    pub login_refund: Script,
    pub window_count: Script,
}

/// A commit step in the caller's user slot (see the module docs).
fn commit_script(body: &str) -> Script {
    Script::new(&format!("{PROLOGUE}{body}{EPILOGUE}"))
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            commit_member: commit_script(include_str!("lua/commit_member.lua")),
            update_user: commit_script(include_str!("lua/update_user.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            reserve: Script::new(include_str!("lua/reserve.lua")),
            idem_commit: Script::new(include_str!("lua/idem_commit.lua")),
            put_user: Script::new(include_str!("lua/put_user.lua")),
            put_article: Script::new(include_str!("lua/put_article.lua")),
            update_article: Script::new(include_str!("lua/update_article.lua")),
            delete_article: Script::new(include_str!("lua/delete_article.lua")),
            tag: Script::new(include_str!("lua/tag.lua")),
            favorited_by: Script::new(include_str!("lua/favorited_by.lua")),
            tags_gone_done: Script::new(include_str!("lua/tags_gone_done.lua")),
            add_comment: Script::new(include_str!("lua/add_comment.lua")),
            delete_comment: Script::new(include_str!("lua/delete_comment.lua")),
            comment_page: Script::new(include_str!("lua/comment_page.lua")),
            idempotency_begin: Script::new(include_str!("lua/idempotency_begin.lua")),
            idempotency_finish: Script::new(include_str!("lua/idempotency_finish.lua")),
            idempotency_release: Script::new(include_str!("lua/idempotency_release.lua")),
            login_refund: Script::new(include_str!("lua/login_refund.lua")),
            window_count: Script::new(include_str!("lua/window_count.lua")),
        }
    }
}
