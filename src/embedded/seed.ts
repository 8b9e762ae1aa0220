// Demo schema for the embedded database. Kept as a TS constant (not a .sql
// asset) so `tsc` carries it into dist/ without a copy step.
//
// All PII is fake but well-formed so that masking rules have something
// realistic to bite on:
//  - emails use the reserved example.{com,org,net} domains (RFC 2606);
//  - phones are E.164 numbers from ranges reserved for fiction
//    (NANP 555-01xx, Ofcom 020 7946 0xxx, ACMA 0491 570 xxx);
//  - card numbers are the public, Luhn-valid test PANs of the card networks;
//  - SSNs are NNN-NN-NNNN with area 900-999, which the SSA never issues.

/** The table whose presence means "already seeded"; checked before seeding. */
export const SEED_MARKER_TABLE = 'public.users';

/** Number of rows the seed inserts per table (tests and docs rely on these). */
export const SEED_COUNTS = { users: 20, orders: 50, audit_notes: 6 } as const;

/** Idempotence is handled by the caller; this SQL assumes an empty schema. */
export const SEED_SQL = `
CREATE TABLE public.users (
  id          integer PRIMARY KEY,
  full_name   text        NOT NULL,
  email       text        NOT NULL UNIQUE,
  phone       text        NOT NULL,
  card_number text        NOT NULL,
  ssn         text        NOT NULL,
  created_at  timestamptz NOT NULL
);

CREATE TABLE public.orders (
  id         integer PRIMARY KEY,
  user_id    integer       NOT NULL REFERENCES public.users(id),
  amount     numeric(10,2) NOT NULL CHECK (amount >= 0),
  status     text          NOT NULL CHECK (status IN ('pending','paid','shipped','refunded','cancelled')),
  created_at timestamptz   NOT NULL
);
CREATE INDEX orders_user_id_idx ON public.orders(user_id);

-- Non-PII table: policies that only mask PII columns must leave this untouched.
CREATE TABLE public.audit_notes (
  id         integer PRIMARY KEY,
  subject    text        NOT NULL,
  note       text        NOT NULL,
  created_at timestamptz NOT NULL
);

INSERT INTO public.users (id, full_name, email, phone, card_number, ssn, created_at) VALUES
  ( 1, 'Alice Johnson',     'alice.johnson@example.com',    '+12025550101',  '4111111111111111', '900-12-3401', '2024-01-03 09:15:00+00'),
  ( 2, 'Bob Martinez',      'bob.martinez@example.org',     '+13125550142',  '5555555555554444', '901-23-4502', '2024-01-07 14:02:00+00'),
  ( 3, 'Chloé Dubois',      'chloe.dubois@example.net',     '+442079460123', '378282246310005',  '902-34-5603', '2024-01-11 11:48:00+00'),
  ( 4, 'Dmitri Volkov',     'dmitri.volkov@example.com',    '+14155550177',  '6011111111111117', '903-45-6704', '2024-01-16 08:30:00+00'),
  ( 5, 'Emma Thompson',     'emma.thompson@example.org',    '+61491570156',  '4012888888881881', '904-56-7805', '2024-01-22 17:05:00+00'),
  ( 6, 'Farid Haddad',      'farid.haddad@example.net',     '+12125550163',  '5105105105105100', '905-67-8906', '2024-02-01 10:10:00+00'),
  ( 7, 'Grace Kim',         'grace.kim@example.com',        '+442079460987', '371449635398431',  '906-78-9007', '2024-02-05 13:27:00+00'),
  ( 8, 'Hiroshi Tanaka',    'hiroshi.tanaka@example.org',   '+16175550119',  '3530111333300000', '907-89-0108', '2024-02-09 06:55:00+00'),
  ( 9, 'Isabel García',     'isabel.garcia@example.net',    '+61491570110',  '6011000990139424', '908-90-1209', '2024-02-14 19:40:00+00'),
  (10, 'Jamal Washington',  'jamal.washington@example.com', '+13035550188',  '4242424242424242', '909-01-2310', '2024-02-20 12:00:00+00'),
  (11, 'Katarzyna Nowak',   'katarzyna.nowak@example.org',  '+442079460555', '2223003122003222', '910-12-3411', '2024-03-02 09:09:00+00'),
  (12, 'Liam O''Connor',    'liam.oconnor@example.net',     '+12065550134',  '5200828282828210', '911-23-4512', '2024-03-08 15:33:00+00'),
  (13, 'Mei Chen',          'mei.chen@example.com',         '+61491570199',  '3566002020360505', '912-34-5613', '2024-03-15 07:21:00+00'),
  (14, 'Noah Schmidt',      'noah.schmidt@example.org',     '+17135550150',  '4000056655665556', '913-45-6714', '2024-03-21 18:12:00+00'),
  (15, 'Olivia Rossi',      'olivia.rossi@example.net',     '+442079460321', '30569309025904',   '914-56-7815', '2024-04-02 10:45:00+00'),
  (16, 'Priya Patel',       'priya.patel@example.com',      '+14045550171',  '6200000000000005', '915-67-8916', '2024-04-10 08:08:00+00'),
  (17, 'Quentin Moreau',    'quentin.moreau@example.org',   '+61491570123',  '38520000023237',   '916-78-9017', '2024-04-18 16:50:00+00'),
  (18, 'Rosa Álvarez',      'rosa.alvarez@example.net',     '+13055550196',  '4000002500003155', '917-89-0118', '2024-04-25 11:11:00+00'),
  (19, 'Samuel Okafor',     'samuel.okafor@example.com',    '+442079460777', '5454545454545454', '918-90-1219', '2024-05-03 14:14:00+00'),
  (20, 'Tanya Ivanova',     'tanya.ivanova@example.org',    '+15035550108',  '4000000000003220', '919-01-2320', '2024-05-12 09:59:00+00');

-- Deterministic pseudo-random orders: same data on every start so tests and
-- screenshots are reproducible.
INSERT INTO public.orders (id, user_id, amount, status, created_at)
SELECT g,
       ((g * 7) % 20) + 1,
       round((((g * 37) % 500) + 4.99)::numeric, 2),
       (ARRAY['pending','paid','shipped','refunded','cancelled'])[((g * 3) % 5) + 1],
       timestamptz '2024-05-15 00:00:00+00' + make_interval(hours => g * 29)
FROM generate_series(1, 50) AS g;

INSERT INTO public.audit_notes (id, subject, note, created_at) VALUES
  (1, 'schema',    'Demo schema created by dbward dev mode.',                      '2024-01-01 00:00:00+00'),
  (2, 'retention', 'Orders older than 7 years are archived quarterly.',             '2024-01-02 00:00:00+00'),
  (3, 'access',    'Support staff read users via masked views only.',               '2024-01-03 00:00:00+00'),
  (4, 'incident',  'Nightly export job retried after a transient network error.',   '2024-02-10 00:00:00+00'),
  (5, 'change',    'Added CHECK constraint on orders.status.',                      '2024-03-01 00:00:00+00'),
  (6, 'review',    'Quarterly access review completed; no findings.',               '2024-04-01 00:00:00+00');
`;
