//! The resource kinds the Admin API manages and the names APISIX uses for them.

/// A stored resource collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    StreamRoute,
    Upstream,
    Ssl,
}

impl Kind {
    /// Every kind, in the order the compiler needs them (dependencies first).
    pub const ALL: [Kind; 3] = [Kind::Ssl, Kind::Upstream, Kind::StreamRoute];

    /// The collection's path segment and store directory (`stream_routes`, `upstreams`, `ssls`).
    pub fn from_dir(dir: &str) -> Option<Kind> {
        match dir {
            "stream_routes" => Some(Kind::StreamRoute),
            "upstreams" => Some(Kind::Upstream),
            "ssls" => Some(Kind::Ssl),
            _ => None,
        }
    }

    /// The collection's directory name.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::StreamRoute => "stream_routes",
            Kind::Upstream => "upstreams",
            Kind::Ssl => "ssls",
        }
    }

    /// The singular word APISIX uses in messages (`missing stream route id`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::StreamRoute => "stream route",
            Kind::Upstream => "upstream",
            Kind::Ssl => "ssl",
        }
    }

    /// Whether PATCH is allowed (APISIX refuses it for stream routes).
    pub fn supports_patch(self) -> bool {
        !matches!(self, Kind::StreamRoute)
    }
}

/// The stream plugins streamgate ships, with their APISIX priorities (run highest first).
pub const STREAM_PLUGINS: &[(&str, i32)] = &[
    ("ip-restriction", 3000),
    ("limit-conn", 1003),
    ("mqtt-proxy", 1000),
    ("prometheus", 500),
];
