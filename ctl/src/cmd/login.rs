//! `login` and `logout`: registry credentials stored on the agent's host.

use berth::v1::{images_client::ImagesClient, LoginRequest, LogoutRequest, RegistryCredentials};

use super::pull::{read_password, registry_error, LoginArgs, LogoutArgs};
use crate::error::{Error, Result};
use crate::fleet::Member;
use crate::output::{self, print_json_line};

/// `login [REGISTRY] -u USER --password-stdin`: checks and stores
/// credentials on the agent.
pub async fn login(m: &Member, json: bool, args: LoginArgs) -> Result<()> {
    if !args.password_stdin {
        return Err(Error::Message(
            "give the password on stdin with --password-stdin".into(),
        ));
    }
    let password = read_password().await?;
    let r = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .login(LoginRequest {
            registry: args.registry.unwrap_or_default(),
            credentials: Some(RegistryCredentials {
                username: args.username,
                password,
            }),
        })
        .await
        .map_err(registry_error)?
        .into_inner();
    if json {
        print_json_line(&output::message_json(&r)?);
    } else {
        println!("Login succeeded: {} as {}", r.registry, r.username);
    }
    Ok(())
}

/// `logout [REGISTRY]`.
pub async fn logout(m: &Member, json: bool, args: LogoutArgs) -> Result<()> {
    let r = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .logout(LogoutRequest {
            registry: args.registry.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if json {
        print_json_line(&output::message_json(&r)?);
    } else {
        println!("Removed the credentials of {}", r.registry);
    }
    Ok(())
}
