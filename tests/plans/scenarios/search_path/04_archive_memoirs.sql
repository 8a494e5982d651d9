ALTER TABLE public.memoirs ADD COLUMN archived boolean NOT NULL DEFAULT false;
