-- A store made by main before Alembic (schema_version 2), dumped with pg_dump.
-- {schema} is replaced by the test's schema.
SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE {schema}.consents (
    id integer NOT NULL,
    subscriber_id integer NOT NULL,
    consent_version character varying(64) NOT NULL,
    source character varying(64) NOT NULL,
    page_url text DEFAULT ''::text NOT NULL,
    requested_at timestamp with time zone NOT NULL,
    request_ip character varying(64) DEFAULT ''::character varying NOT NULL,
    request_user_agent text DEFAULT ''::text NOT NULL,
    mail_sha256 character varying(64) NOT NULL,
    mail_message_id text NOT NULL,
    confirmed_at timestamp with time zone,
    confirm_ip character varying(64),
    confirm_user_agent text,
    closed_at timestamp with time zone
);

CREATE SEQUENCE {schema}.consents_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE {schema}.consents_id_seq OWNED BY {schema}.consents.id;

CREATE TABLE {schema}.deliveries (
    issue_id integer NOT NULL,
    subscriber_id integer NOT NULL,
    status character varying(16) NOT NULL,
    detail text DEFAULT ''::text NOT NULL,
    message_id text DEFAULT ''::text NOT NULL,
    attempts integer DEFAULT 1 NOT NULL,
    next_attempt timestamp with time zone,
    updated_at timestamp with time zone NOT NULL
);

CREATE TABLE {schema}.feed_state (
    url text NOT NULL,
    etag text,
    last_modified text,
    permanent_url text,
    gone boolean DEFAULT false NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

CREATE TABLE {schema}.issue_articles (
    newsletter text NOT NULL,
    article_id text NOT NULL,
    issue_id integer NOT NULL,
    "position" integer NOT NULL
);

CREATE TABLE {schema}.issues (
    id integer NOT NULL,
    newsletter text NOT NULL,
    issue_date date NOT NULL,
    status character varying(16) NOT NULL,
    cutoff timestamp with time zone NOT NULL,
    subject text NOT NULL,
    preheader text NOT NULL,
    html text NOT NULL,
    text text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    sent_at timestamp with time zone,
    claimed_by text,
    claimed_until timestamp with time zone
);

CREATE SEQUENCE {schema}.issues_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE {schema}.issues_id_seq OWNED BY {schema}.issues.id;

CREATE TABLE {schema}.schema_version (
    version integer NOT NULL,
    applied_at timestamp with time zone NOT NULL
);

CREATE TABLE {schema}.subscribers (
    id integer NOT NULL,
    email character varying(320) NOT NULL,
    status character varying(16) NOT NULL,
    source text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    confirmed_at timestamp with time zone,
    unsubscribed_at timestamp with time zone,
    bounce_count integer DEFAULT 0 NOT NULL
);

CREATE SEQUENCE {schema}.subscribers_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE {schema}.subscribers_id_seq OWNED BY {schema}.subscribers.id;

CREATE TABLE {schema}.suppressions (
    address_hash character varying(64) NOT NULL,
    reason character varying(32) NOT NULL,
    created_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY {schema}.consents ALTER COLUMN id SET DEFAULT nextval('{schema}.consents_id_seq'::regclass);

ALTER TABLE ONLY {schema}.issues ALTER COLUMN id SET DEFAULT nextval('{schema}.issues_id_seq'::regclass);

ALTER TABLE ONLY {schema}.subscribers ALTER COLUMN id SET DEFAULT nextval('{schema}.subscribers_id_seq'::regclass);

INSERT INTO {schema}.consents VALUES (1, 2, '2026-11-v1', 'cli', '', '2026-11-27 07:05:00+00', '', '', '0000000000000000000000000000000000000000000000000000000000000000', '<c@x>', NULL, NULL, NULL, NULL);

INSERT INTO {schema}.deliveries VALUES (1, 1, 'sent', '250 ok', '<m@x>', 1, NULL, '2026-11-27 07:05:00+00');

INSERT INTO {schema}.issue_articles VALUES ('REE Daily', 'a1', 1, 0);
INSERT INTO {schema}.issue_articles VALUES ('REE Daily', 'a2', 1, 1);

INSERT INTO {schema}.issues VALUES (1, 'REE Daily', '2026-11-27', 'sending', '2026-11-27 07:05:00+00', 'Subject', 'pre', '<p>h</p>', 't', '2026-11-27 07:05:00+00', NULL, NULL, NULL);

INSERT INTO {schema}.schema_version VALUES (1, '2026-11-30 20:04:33.772657+00');
INSERT INTO {schema}.schema_version VALUES (2, '2026-11-30 20:04:33.788249+00');

INSERT INTO {schema}.subscribers VALUES (1, 'ann@example.org', 'active', 'legacy', '2026-11-27 07:05:00+00', '2026-11-27 07:05:00+00', '2026-11-27 07:05:00+00', NULL, 0);
INSERT INTO {schema}.subscribers VALUES (2, 'bob@example.org', 'pending', 'legacy', '2026-11-27 07:05:00+00', '2026-11-27 07:05:00+00', NULL, NULL, 0);

SELECT pg_catalog.setval('{schema}.consents_id_seq', 1, true);

SELECT pg_catalog.setval('{schema}.issues_id_seq', 1, true);

SELECT pg_catalog.setval('{schema}.subscribers_id_seq', 2, true);

ALTER TABLE ONLY {schema}.consents
    ADD CONSTRAINT pk_consents PRIMARY KEY (id);

ALTER TABLE ONLY {schema}.deliveries
    ADD CONSTRAINT pk_deliveries PRIMARY KEY (issue_id, subscriber_id);

ALTER TABLE ONLY {schema}.feed_state
    ADD CONSTRAINT pk_feed_state PRIMARY KEY (url);

ALTER TABLE ONLY {schema}.issue_articles
    ADD CONSTRAINT pk_issue_articles PRIMARY KEY (newsletter, article_id);

ALTER TABLE ONLY {schema}.issues
    ADD CONSTRAINT pk_issues PRIMARY KEY (id);

ALTER TABLE ONLY {schema}.schema_version
    ADD CONSTRAINT pk_schema_version PRIMARY KEY (version);

ALTER TABLE ONLY {schema}.subscribers
    ADD CONSTRAINT pk_subscribers PRIMARY KEY (id);

ALTER TABLE ONLY {schema}.suppressions
    ADD CONSTRAINT pk_suppressions PRIMARY KEY (address_hash);

ALTER TABLE ONLY {schema}.issues
    ADD CONSTRAINT uq_issues_newsletter_issue_date UNIQUE (newsletter, issue_date);

ALTER TABLE ONLY {schema}.subscribers
    ADD CONSTRAINT uq_subscribers_email UNIQUE (email);

CREATE INDEX ix_consents_subscriber_id_requested_at ON {schema}.consents USING btree (subscriber_id, requested_at);

CREATE INDEX ix_deliveries_subscriber_id ON {schema}.deliveries USING btree (subscriber_id);

CREATE INDEX ix_issue_articles_issue_id ON {schema}.issue_articles USING btree (issue_id);

CREATE INDEX ix_subscribers_status_id ON {schema}.subscribers USING btree (status, id);

ALTER TABLE ONLY {schema}.consents
    ADD CONSTRAINT fk_consents_subscriber_id_subscribers FOREIGN KEY (subscriber_id) REFERENCES {schema}.subscribers(id) ON DELETE CASCADE;

ALTER TABLE ONLY {schema}.deliveries
    ADD CONSTRAINT fk_deliveries_issue_id_issues FOREIGN KEY (issue_id) REFERENCES {schema}.issues(id);

ALTER TABLE ONLY {schema}.deliveries
    ADD CONSTRAINT fk_deliveries_subscriber_id_subscribers FOREIGN KEY (subscriber_id) REFERENCES {schema}.subscribers(id) ON DELETE CASCADE;

ALTER TABLE ONLY {schema}.issue_articles
    ADD CONSTRAINT fk_issue_articles_issue_id_issues FOREIGN KEY (issue_id) REFERENCES {schema}.issues(id);
