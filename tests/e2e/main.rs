//! End-to-end tests: every BFF RPC, health, reflection, auth, deadlines,
//! idempotency and failure behaviour, through real loopback sockets.

mod admission;
mod architecture;
mod auth;
mod bounds;
mod browser;
mod contracts;
mod deadlines;
mod drain;
mod errors;
mod feed_memory;
mod health;
mod hostile;
mod jwks;
mod launcher;
mod layers;
mod logs;
mod metrics;
mod mobile;
mod mobile_payload;
mod node_peer;
mod nothing_lost;
mod orders;
mod partner;
mod partner_limits;
mod partner_process;
mod readme;
mod reflection;
mod resilience;
mod tables;
mod traces;
mod transport;
mod web;
mod web_process;
mod zero_trust;
