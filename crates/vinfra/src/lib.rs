//! The vinfra command: CLI for the REST API plus the console, agent and lab subcommands.
