//! SQLite backend: written by the store work.
