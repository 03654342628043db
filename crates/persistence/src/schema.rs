//! Table definitions shared by both backends. `just schema-check` compares
//! this file with what the migrations produce.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        username_key -> Text,
        password_hash -> Text,
        first_name -> Text,
        last_name -> Text,
        avatar -> Nullable<Text>,
        created_at -> Timestamp,
        event_seq -> BigInt,
        total_unread -> BigInt,
        unread_conversations -> BigInt,
        last_seen -> Nullable<Timestamp>,
        share_presence -> Bool,
    }
}

diesel::table! {
    connections (id) {
        id -> BigInt,
        requester_id -> BigInt,
        addressee_id -> BigInt,
        user_low -> BigInt,
        user_high -> BigInt,
        status -> Text,
        conversation_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        connection_id -> BigInt,
        user_low -> BigInt,
        user_high -> BigInt,
        last_message_id -> Nullable<BigInt>,
        unread_for_low -> BigInt,
        unread_for_high -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        message_count -> BigInt,
        delivered_for_low -> BigInt,
        delivered_for_high -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        conversation_id -> BigInt,
        sender_id -> BigInt,
        content -> Text,
        client_id -> Nullable<Text>,
        created_at -> Timestamp,
        read_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        reactions -> Text,
        attachments -> Text,
    }
}

diesel::table! {
    attachments (id) {
        id -> BigInt,
        uploader_id -> BigInt,
        storage_key -> Text,
        thumbnail_key -> Nullable<Text>,
        filename -> Text,
        content_type -> Text,
        size -> BigInt,
        sha256 -> Text,
        width -> Nullable<BigInt>,
        height -> Nullable<BigInt>,
        ready -> Bool,
        message_id -> Nullable<BigInt>,
        conversation_id -> Nullable<BigInt>,
        claimed_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    user_events (user_id, seq) {
        user_id -> BigInt,
        seq -> BigInt,
        payload -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    reactions (id) {
        id -> BigInt,
        message_id -> BigInt,
        user_id -> BigInt,
        emoji -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_outbox (id) {
        id -> BigInt,
        kind -> Text,
        recipient_id -> BigInt,
        subject_id -> BigInt,
        state -> Text,
        due_at -> Timestamp,
        attempts -> BigInt,
        claimed_until -> Nullable<Timestamp>,
        claim_token -> Nullable<Text>,
        payload -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    token_blacklist (jti) {
        jti -> Text,
        user_id -> BigInt,
        expires_at -> Timestamp,
        blacklisted_at -> Timestamp,
    }
}

diesel::table! {
    deployment (id) {
        id -> BigInt,
        deployment_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(conversations -> connections (connection_id));
diesel::joinable!(messages -> conversations (conversation_id));

diesel::table! {
    delivery_marks (conversation_id, sender_id, up_to) {
        conversation_id -> BigInt,
        sender_id -> BigInt,
        up_to -> BigInt,
        at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    delivery_marks,
    users,
    connections,
    conversations,
    messages,
    reactions,
    attachments,
    user_events,
    webhook_outbox,
    token_blacklist,
    deployment
);
