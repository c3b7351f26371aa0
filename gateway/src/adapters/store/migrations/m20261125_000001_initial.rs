//! Clients, local accounts, refresh tokens, signing keys and the audit trail.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("clients")
                .col(string("id").primary_key())
                .col(string("name"))
                .col(string("kind"))
                .col(string("auth_method"))
                .col(string_null("secret_digest"))
                .col(text_null("jwks"))
                .col(text("redirect_uris"))
                .col(text("post_logout_redirect_uris"))
                .col(string("id_token_alg"))
                .col(string_null("userinfo_signed_alg"))
                .col(string_null("min_acr"))
                .col(big_integer_null("max_auth_age"))
                .col(boolean("allow_refresh"))
                .col(boolean("may_introspect"))
                .col(boolean("enabled"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("accounts")
                .col(string("id").primary_key())
                .col(string_uniq("username"))
                .col(string("display_name"))
                .col(string_null("given_name"))
                .col(string_null("family_name"))
                .col(string_null("email"))
                .col(string_null("password_hash"))
                .col(boolean("disabled"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("refresh_tokens")
                .col(string("token_digest").primary_key())
                .col(string("family_id"))
                .col(string("client_id"))
                .col(string("account_id"))
                .col(string("session_id"))
                .col(text("scopes"))
                .col(big_integer("auth_time"))
                .col(text("amr"))
                .col(string("acr"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("idx_refresh_family", "family_id"),
            ("idx_refresh_session", "session_id"),
            ("idx_refresh_expires", "expires_at"),
        ] {
            m.create_index(Index::create().name(name).table("refresh_tokens").col(col).to_owned())
                .await?;
        }
        m.create_table(
            Table::create()
                .table("signing_keys")
                .col(string("kid").primary_key())
                .col(string("alg"))
                .col(blob("sealed_private_key"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("rotated_at"))
                .col(timestamp_with_time_zone_null("retire_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("audit_events")
                .col(big_pk_auto("seq"))
                .col(timestamp_with_time_zone("at"))
                .col(string("event_type"))
                .col(string("outcome"))
                .col(string_null("source_ip"))
                .col(string_null("user_agent"))
                .col(string_null("correlation_id"))
                .col(text("event"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_audit_at").table("audit_events").col("at").to_owned())
            .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_type")
                .table("audit_events")
                .col("event_type")
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["audit_events", "signing_keys", "refresh_tokens", "accounts", "clients"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
