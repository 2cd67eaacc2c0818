//! Cluster PKI: written by the console work.
