//! Route modules; each registers its resources on a [`Router`].
//!
//! The [`Router`] both mounts the routes on actix and lists them, so
//! [`route_table`] is derived from the very code that mounts them (the
//! OpenAPI test compares it with the document).

pub(crate) mod attachments;
pub(crate) mod auth;
pub(crate) mod connections;
pub(crate) mod conversations;
pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod messages;
pub(crate) mod presence;
pub(crate) mod search;
pub(crate) mod users;
pub(crate) mod web_client;
pub(crate) mod ws;
pub(crate) mod ws_read;

use actix_web::{FromRequest, Handler, Resource, Responder, Route, web};

/// Moved to [`crate::extract`]; kept here for the handlers that import it from `super`.
pub(crate) use crate::extract::Validator;

/// Registers every route. Paths end in `/`; the server's path normalization
/// makes the slash optional for clients.
fn register(r: &mut Router<'_>) {
    health::configure(r);
    auth::configure(r);
    users::configure(r);
    connections::configure(r);
    conversations::configure(r);
    messages::configure(r);
    attachments::configure(r);
    search::configure(r);
    presence::configure(r);
    ws::configure(r);
    docs::configure(r);
    web_client::configure(r);
}

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    register(&mut Router {
        cfg: Some(cfg),
        table: Vec::new(),
    });
}

/// Every mounted route as `(method, path pattern)`, in mounting order, e.g.
/// `("GET", "/api/users/{id}/")`. Built by running the same registration
/// code as [`configure`] without an actix app.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    let mut router = Router {
        cfg: None,
        table: Vec::new(),
    };
    register(&mut router);
    router.table
}

/// Mounts resources on an actix `ServiceConfig` (when it has one) and
/// records each `(method, path)` it mounts.
pub struct Router<'a> {
    cfg: Option<&'a mut web::ServiceConfig>,
    table: Vec<(&'static str, &'static str)>,
}

impl std::fmt::Debug for Router<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("mounting", &self.cfg.is_some())
            .field("table", &self.table)
            .finish()
    }
}

impl Router<'_> {
    /// One resource at `path` with the methods `build` adds; any other
    /// method on it answers 405.
    pub fn resource(
        &mut self,
        path: &'static str,
        build: impl FnOnce(Endpoint) -> Endpoint,
    ) -> &mut Self {
        let endpoint = build(Endpoint {
            methods: Vec::new(),
            resource: web::resource(path),
        });
        self.table
            .extend(endpoint.methods.iter().map(|method| (*method, path)));
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.service(endpoint.resource);
        }
        self
    }
}

/// The routes of one resource, by method.
pub struct Endpoint {
    methods: Vec<&'static str>,
    resource: Resource,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

macro_rules! method {
    ($(#[$doc:meta])* $name:ident, $method:literal, $route:path) => {
        $(#[$doc])*
        pub fn $name<F, Args>(self, handler: F) -> Self
        where
            F: Handler<Args>,
            Args: FromRequest + 'static,
            F::Output: Responder + 'static,
        {
            self.route($method, $route().to(handler))
        }
    };
}

impl Endpoint {
    method!(
        /// `GET` to `handler`.
        get, "GET", web::get
    );
    method!(
        /// `POST` to `handler`.
        post, "POST", web::post
    );
    method!(
        /// `PUT` to `handler`.
        put, "PUT", web::put
    );
    method!(
        /// `PATCH` to `handler`.
        patch, "PATCH", web::patch
    );
    method!(
        /// `DELETE` to `handler`.
        delete, "DELETE", web::delete
    );

    fn route(mut self, method: &'static str, route: Route) -> Self {
        self.methods.push(method);
        self.resource = self.resource.route(route);
        self
    }
}
