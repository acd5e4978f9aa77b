//! Shoal's smart client (being written).
