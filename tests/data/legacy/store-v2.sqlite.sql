-- A store made by main before Alembic (schema_version 2): sqlite3 .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	applied_at DATETIME NOT NULL, 
	CONSTRAINT pk_schema_version PRIMARY KEY (version)
);
INSERT INTO schema_version VALUES(1,'2026-11-30 20:04:30.116763');
INSERT INTO schema_version VALUES(2,'2026-11-30 20:04:30.122474');
CREATE TABLE subscribers (
	id INTEGER NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	source TEXT DEFAULT '' NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	confirmed_at DATETIME, 
	unsubscribed_at DATETIME, 
	bounce_count INTEGER DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_subscribers PRIMARY KEY (id), 
	CONSTRAINT uq_subscribers_email UNIQUE (email)
);
INSERT INTO subscribers VALUES(1,'ann@example.org','active','legacy','2026-11-27 07:05:00.000000','2026-11-27 07:05:00.000000','2026-11-27 07:05:00.000000',NULL,0);
INSERT INTO subscribers VALUES(2,'bob@example.org','pending','legacy','2026-11-27 07:05:00.000000','2026-11-27 07:05:00.000000',NULL,NULL,0);
CREATE TABLE issues (
	id INTEGER NOT NULL, 
	newsletter TEXT NOT NULL, 
	issue_date DATE NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	cutoff DATETIME NOT NULL, 
	subject TEXT NOT NULL, 
	preheader TEXT NOT NULL, 
	html TEXT NOT NULL, 
	text TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	sent_at DATETIME, 
	claimed_by TEXT, 
	claimed_until DATETIME, 
	CONSTRAINT pk_issues PRIMARY KEY (id), 
	CONSTRAINT uq_issues_newsletter_issue_date UNIQUE (newsletter, issue_date)
);
INSERT INTO issues VALUES(1,'REE Daily','2026-11-27','sending','2026-11-27 07:05:00.000000','Subject','pre','<p>h</p>','t','2026-11-27 07:05:00.000000',NULL,NULL,NULL);
CREATE TABLE issue_articles (
	newsletter TEXT NOT NULL, 
	article_id TEXT NOT NULL, 
	issue_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	CONSTRAINT pk_issue_articles PRIMARY KEY (newsletter, article_id), 
	CONSTRAINT fk_issue_articles_issue_id_issues FOREIGN KEY(issue_id) REFERENCES issues (id)
);
INSERT INTO issue_articles VALUES('REE Daily','a1',1,0);
INSERT INTO issue_articles VALUES('REE Daily','a2',1,1);
CREATE TABLE deliveries (
	issue_id INTEGER NOT NULL, 
	subscriber_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	detail TEXT DEFAULT '' NOT NULL, 
	message_id TEXT DEFAULT '' NOT NULL, 
	attempts INTEGER DEFAULT '1' NOT NULL, 
	next_attempt DATETIME, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_deliveries PRIMARY KEY (issue_id, subscriber_id), 
	CONSTRAINT fk_deliveries_issue_id_issues FOREIGN KEY(issue_id) REFERENCES issues (id), 
	CONSTRAINT fk_deliveries_subscriber_id_subscribers FOREIGN KEY(subscriber_id) REFERENCES subscribers (id) ON DELETE CASCADE
);
INSERT INTO deliveries VALUES(1,1,'sent','250 ok','<m@x>',1,NULL,'2026-11-27 07:05:00.000000');
CREATE TABLE feed_state (
	url TEXT NOT NULL, 
	etag TEXT, 
	last_modified TEXT, 
	permanent_url TEXT, 
	gone BOOLEAN DEFAULT 0 NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_feed_state PRIMARY KEY (url)
);
CREATE TABLE consents (
	id INTEGER NOT NULL, 
	subscriber_id INTEGER NOT NULL, 
	consent_version VARCHAR(64) NOT NULL, 
	source VARCHAR(64) NOT NULL, 
	page_url TEXT DEFAULT '' NOT NULL, 
	requested_at DATETIME NOT NULL, 
	request_ip VARCHAR(64) DEFAULT '' NOT NULL, 
	request_user_agent TEXT DEFAULT '' NOT NULL, 
	mail_sha256 VARCHAR(64) NOT NULL, 
	mail_message_id TEXT NOT NULL, 
	confirmed_at DATETIME, 
	confirm_ip VARCHAR(64), 
	confirm_user_agent TEXT, 
	closed_at DATETIME, 
	CONSTRAINT pk_consents PRIMARY KEY (id), 
	CONSTRAINT fk_consents_subscriber_id_subscribers FOREIGN KEY(subscriber_id) REFERENCES subscribers (id) ON DELETE CASCADE
);
INSERT INTO consents VALUES(1,2,'2026-11-v1','cli','','2026-11-27 07:05:00.000000','','','0000000000000000000000000000000000000000000000000000000000000000','<c@x>',NULL,NULL,NULL,NULL);
CREATE TABLE suppressions (
	address_hash VARCHAR(64) NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_suppressions PRIMARY KEY (address_hash)
);
CREATE INDEX ix_subscribers_status_id ON subscribers (status, id);
CREATE INDEX ix_issue_articles_issue_id ON issue_articles (issue_id);
CREATE INDEX ix_deliveries_subscriber_id ON deliveries (subscriber_id);
CREATE INDEX ix_consents_subscriber_id_requested_at ON consents (subscriber_id, requested_at);
COMMIT;
