//! End-to-end tests: one binary, the real server per test, on SQLite or
//! (with TEST_DATABASE_URL / TEST_REDIS_URL) PostgreSQL and Redis.

mod attachments;
mod auth;
mod chat;
mod cluster;
mod connections;
mod conventions;
mod delivery;
mod hardening;
mod hardening_redis;
mod migrations;
mod multinode;
mod openapi;
mod operability;
mod presence;
mod raw_ws;
mod reactions;
mod read_events;
mod search;
mod smoke;
mod stream;
mod stream_faults;
mod support;
mod token_blacklist;
mod web_client;
mod webhooks;
mod websocket;
mod writer;
mod ws_limits;
mod ws_pipeline;
mod ws_rate;
mod ws_slow;
mod ws_support;
