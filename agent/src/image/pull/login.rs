//! `login`: checks credentials against a registry before storing them.

use oci_client::secrets::RegistryAuth;
use oci_client::Reference;

use super::credentials::{login_registry, Credentials};
use super::errors::oci_err;
use super::Puller;
use crate::image::{ErrorKind, ImageError};

impl Puller {
    /// Checks `creds` against `registry` and stores them. Returns the
    /// normalised registry name.
    pub async fn login(&self, registry: &str, creds: Credentials) -> Result<String, ImageError> {
        let registry = login_registry(registry)?;
        if creds.username.is_empty() {
            return Err(ImageError::InvalidReference(
                "a user name is required".to_string(),
            ));
        }
        let client = self.clients.client(&registry)?;
        // Any repository will do: a token server checks the credentials
        // before it looks at the scope.
        let probe = Reference::with_tag(
            registry.clone(),
            "library/berth-login-check".to_string(),
            "latest".to_string(),
        );
        let auth = RegistryAuth::Basic(creds.username.clone(), creds.password.clone());
        let token = client
            .auth(&probe, &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| oci_err(&format!("logging in to {registry}"), e))?;
        if token.is_none() {
            // Basic auth (or none): oci-client does not send the credentials
            // during auth(), so make one authenticated request. Only a 401
            // means "refused"; registries without a catalog answer otherwise.
            if let Err(e) = client.catalog(&probe, &auth, Some(1), None).await {
                let e = oci_err(&format!("logging in to {registry}"), e);
                if matches!(
                    e.kind(),
                    ErrorKind::Unauthenticated
                        | ErrorKind::PermissionDenied
                        | ErrorKind::Unavailable
                ) {
                    return Err(e);
                }
            }
        }
        self.credentials.store(&registry, creds)?;
        Ok(registry)
    }

    /// Forgets the credentials of `registry`; NotFound if there are none.
    pub fn logout(&self, registry: &str) -> Result<String, ImageError> {
        let registry = login_registry(registry)?;
        self.credentials.remove(&registry)?;
        Ok(registry)
    }
}
