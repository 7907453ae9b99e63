//! The loop in-process: a fake engine, tokio's paused time, a sandbox
//! folder. (Written next.)
